//! For the QR code tests of common and the CLI: an otpauth URI of a given length, a
//! temporary directory, and zbarimg (the independent decoder) reading an image file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An otpauth URI as an enrollment shows it.
pub const EXAMPLE: &str = "otpauth://totp/nas:alice%40nas?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\
                       &issuer=nas&algorithm=SHA1&digits=6&period=30";

/// A realistic otpauth URI of exactly `len` bytes (≥ 130), padded in the account name.
pub fn uri_of_len(len: usize) -> String {
    let head = "otpauth://totp/nas:";
    let tail = "%40nas?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DP\
                &issuer=nas&algorithm=SHA1&digits=6&period=30";
    let pad = len - head.len() - tail.len();
    let account: String = (0..pad)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let uri = format!("{head}{account}{tail}");
    assert_eq!(uri.len(), len);
    uri
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "twostep-qr-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).expect("create a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The text zbarimg finds in the image at `path`. zbarimg is required: without it the
/// tests fail rather than skip.
pub fn zbar_decode(path: &Path) -> String {
    let output = match Command::new("zbarimg")
        .arg("--raw")
        .arg("-q")
        .arg(path)
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run zbarimg ({e}); the QR tests need it to decode the images: \
             apt-get install zbar-tools"
        ),
    };
    assert!(
        output.status.success(),
        "zbarimg found no QR code in {} ({}): {}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("zbarimg printed UTF-8");
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}
