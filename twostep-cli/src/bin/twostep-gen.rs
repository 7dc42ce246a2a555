//! Writes the `twostep` man pages and bash/zsh/fish completions from the clap definitions, so
//! they cannot drift from `--help`. Usage: `twostep-gen OUT_DIR` (used by packaging).

use std::path::PathBuf;
use std::process::ExitCode;

use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: twostep-gen OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twostep-gen: {}: {e}", out.display());
            ExitCode::from(1)
        }
    }
}

fn generate(out: &std::path::Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    // twostep.1 plus one page per subcommand (twostep-enroll.1, ...).
    clap_mangen::generate_to(twostep_cli::command(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = twostep_cli::command();
        clap_complete::generate_to(shell, &mut cmd, "twostep", &completions)?;
    }
    Ok(())
}
