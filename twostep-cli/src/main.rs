fn main() -> std::process::ExitCode {
    twostep_cli::main()
}
