//! Reading the admin's answers. Works on a terminal and on a pipe (scripts, tests).

use crate::error::CliError;
use std::io::{BufRead, Read, Write};

use zeroize::Zeroizing;

/// Answers longer than this are cut off; nothing we ask for is long.
const MAX_ANSWER: usize = 1024;

/// Prints `question`, reads one line; `None` at end of input.
pub fn ask(question: &str) -> Result<Option<Zeroizing<String>>, CliError> {
    print!("{question}");
    std::io::stdout()
        .flush()
        .map_err(|e| CliError::io("cannot write to the terminal", e))?;
    let mut raw = Zeroizing::new(Vec::new());
    let stdin = std::io::stdin();
    let mut handle = stdin.lock().take(MAX_ANSWER as u64);
    let n = handle
        .read_until(b'\n', &mut raw)
        .map_err(|e| CliError::io("cannot read the answer", e))?;
    if n == 0 {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&raw).trim().to_string();
    Ok(Some(Zeroizing::new(text)))
}
