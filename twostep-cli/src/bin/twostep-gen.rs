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
    // twostep.8 plus one page per subcommand (twostep-enroll.8, ...): section 8, system
    // administration, because twostep is in /usr/sbin and must be run as root.
    let mut cmd = twostep_cli::command().disable_help_subcommand(true);
    cmd.build();
    write_pages(&cmd, &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = twostep_cli::command();
        clap_complete::generate_to(shell, &mut cmd, "twostep", &completions)?;
    }
    Ok(())
}

/// Writes the page of `cmd` and of each visible subcommand (clap_mangen's `generate_to`, in
/// section 8).
fn write_pages(cmd: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .generate_to(dir)?;
    Ok(())
}
