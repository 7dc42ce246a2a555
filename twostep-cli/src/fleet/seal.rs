//! The fleet key: 32 random bytes in a root-only file on every host of the fleet, which seals
//! TOTP keys, email addresses and waiting enrollments before they reach the database
//! (XChaCha20-Poly1305, a random 24-byte nonce per value). The associated data names the
//! column and the user, so a sealed value moved to another row or column does not open.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use twostep_common::securefs::{self, Access};
use zeroize::Zeroizing;

use super::error::FleetError;

pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const DOMAIN: &str = "twostep-fleet-v1";

pub struct FleetKey {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetKey({}, <redacted>)", self.path.display())
    }
}

impl FleetKey {
    /// Reads the key file: root's, mode 0600 (no group or other bits), exactly 32 bytes, in
    /// directories only root can change.
    pub fn load(path: &Path) -> Result<FleetKey, FleetError> {
        let bytes = securefs::read_root_file(path, KEY_BYTES as u64 + 1, Access::Private)
            .map_err(|e| FleetError::KeyFile(format!("the fleet key: {e}")))?
            .ok_or_else(|| {
                FleetError::KeyFile(format!(
                    "the fleet key {} does not exist (create it with twostep fleet init on the \
                     first host, copy it to the others)",
                    path.display()
                ))
            })?;
        if bytes.len() != KEY_BYTES {
            return Err(FleetError::KeyFile(format!(
                "the fleet key {} must hold exactly {KEY_BYTES} bytes",
                path.display()
            )));
        }
        let key = chacha20poly1305::Key::from_slice(&bytes);
        Ok(FleetKey {
            cipher: XChaCha20Poly1305::new(key),
            path: path.to_path_buf(),
        })
    }

    /// Creates a new random key file (root, 0600) unless one exists; never replaces one.
    /// Whether it was created.
    pub fn create(path: &Path) -> Result<bool, FleetError> {
        if securefs::read_root_file(path, KEY_BYTES as u64 + 1, Access::Private)
            .map_err(|e| FleetError::KeyFile(format!("the fleet key: {e}")))?
            .is_some()
        {
            return Ok(false);
        }
        let parent = path
            .parent()
            .ok_or_else(|| FleetError::KeyFile(format!("{}: not a file path", path.display())))?;
        // The directory must be root's and not writable by others, as for the config.
        securefs::Dir::open_ancestors(parent)
            .map_err(|e| FleetError::KeyFile(e.to_string()))?
            .ok_or_else(|| FleetError::KeyFile(format!("{} does not exist", parent.display())))?;
        let key = twostep_common::random::bytes(KEY_BYTES).map_err(internal)?;
        // O_EXCL: an existing file (or symlink) under the name is never written through.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| FleetError::KeyFile(format!("cannot create {}: {e}", path.display())))?;
        file.write_all(&key)
            .and_then(|()| file.sync_all())
            .map_err(|e| FleetError::KeyFile(format!("cannot write {}: {e}", path.display())))?;
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `nonce || ciphertext` of `plain`, bound to `column` and `user`.
    pub fn seal(&self, column: &str, user: &str, plain: &[u8]) -> Result<Vec<u8>, FleetError> {
        let nonce = twostep_common::random::bytes(NONCE_BYTES).map_err(internal)?;
        let aad = aad(column, user);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| FleetError::Internal("sealing failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of [`FleetKey::seal`]'s output; an error (never a guess) when the key is
    /// not the one it was sealed with, or the value was changed or moved.
    pub fn open(
        &self,
        column: &str,
        user: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, FleetError> {
        let wrong = || {
            FleetError::WrongKey(format!(
                "the fleet key {} does not open {user}'s {column} in the database (a different \
                 key than the one it was sealed with, or a damaged value): refusing",
                self.path.display()
            ))
        };
        if sealed.len() < NONCE_BYTES + 16 {
            return Err(wrong());
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let aad = aad(column, user);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| wrong())
    }

    /// [`FleetKey::open`] of UTF-8 text.
    pub fn open_text(
        &self,
        column: &str,
        user: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<String>, FleetError> {
        let bytes = self.open(column, user, sealed)?;
        std::str::from_utf8(&bytes)
            .map(|t| Zeroizing::new(t.to_string()))
            .map_err(|_| FleetError::Row(format!("{user}'s {column} is not text")))
    }
}

fn internal(e: twostep_common::error::Error) -> FleetError {
    FleetError::Internal(e.to_string())
}

fn aad(column: &str, user: &str) -> String {
    format!("{DOMAIN}\0{column}\0{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> FleetKey {
        FleetKey {
            cipher: XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&[byte; 32])),
            path: PathBuf::from("/test.key"),
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_key_column_and_user() {
        let k = key(1);
        let sealed = k.seal("totp_secret", "alice", b"JBSWY3DPEHPK3PXP").unwrap();
        assert!(!sealed.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(
            &k.open("totp_secret", "alice", &sealed).unwrap()[..],
            b"JBSWY3DPEHPK3PXP"
        );
        // A fresh nonce every time.
        assert_ne!(
            sealed,
            k.seal("totp_secret", "alice", b"JBSWY3DPEHPK3PXP").unwrap()
        );
        assert!(k.open("totp_secret", "bob", &sealed).is_err());
        assert!(k.open("email", "alice", &sealed).is_err());
        let err = key(2).open("totp_secret", "alice", &sealed).unwrap_err();
        assert!(matches!(err, FleetError::WrongKey(_)), "{err:?}");
        assert!(err.to_string().contains("different key"), "{err}");
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(k.open("totp_secret", "alice", &damaged).is_err());
        assert!(k.open("totp_secret", "alice", &sealed[..10]).is_err());
    }
}
