//! TOTP codes from `oathtool` (OATH Toolkit): an implementation independent of the product's.

use std::process::Command;

/// The code `oathtool` computes for a base32 secret at `epoch`.
///
/// `algorithm` is `"SHA1"`, `"SHA256"` or `"SHA512"`; `digits` 6 to 8; `period` in seconds.
/// Panics when oathtool fails or prints something that is not a code of `digits` digits.
pub fn oathtool_totp(
    secret_b32: &str,
    epoch: i64,
    algorithm: &str,
    digits: u32,
    period: u32,
) -> String {
    let output = crate::run::run(
        Command::new("oathtool")
            .arg(format!("--totp={algorithm}"))
            .arg("-b")
            .arg(format!("--digits={digits}"))
            .arg(format!("--time-step-size={period}s"))
            .arg("--now")
            .arg(format!("@{epoch}"))
            .arg(secret_b32),
        crate::run::TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "oathtool failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let code = stdout.trim().to_string();
    assert!(
        code.len() == digits as usize && code.bytes().all(|b| b.is_ascii_digit()),
        "oathtool printed {stdout:?}, not a {digits}-digit code"
    );
    code
}

/// The default code: SHA1, 6 digits, 30-second steps.
pub fn totp(secret_b32: &str, epoch: i64) -> String {
    oathtool_totp(secret_b32, epoch, "SHA1", 6, 30)
}

/// A 6-digit code that is not valid for `secret_b32` within two 30-second steps of `epoch`
/// (SHA1): a wrong code a module must refuse even with a wide skew.
pub fn wrong_code(secret_b32: &str, epoch: i64) -> String {
    let valid: Vec<String> = (-2..=2).map(|k| totp(secret_b32, epoch + k * 30)).collect();
    let right: u32 = valid[2].parse().expect("digits");
    (1..)
        .map(|k| format!("{:06}", (right + k) % 1_000_000))
        .find(|code| !valid.contains(code))
        .expect("some code is wrong")
}
