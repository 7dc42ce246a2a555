//! User names: the directory's canonical name for a typed one, and the mapping to record file
//! names. Names come from PAM, i.e. from whoever is logging in, so they are treated as hostile:
//! no path separators, no dot files, bounded length.

use std::ffi::OsString;

use nix::unistd::User;

use crate::audit::field;
use crate::error::Error;

/// What the system's user directory (NSS: files, LDAP, SSSD, winbind, ...) says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canonical {
    /// The user exists as `name` (the entry's `pw_name`); `aliased`: that differs from the typed
    /// name (a case-insensitive directory answered `ALICE` with `alice`, or an alias).
    Known { name: String, aliased: bool },
    /// No such user: the lookup succeeded and found nothing.
    Unknown,
}

/// Looks `typed` up with `getpwnam_r`. A failed lookup (directory unreachable, any error other
/// than "not found") is an error: the caller must fail closed. Names that [`encode`] refuses
/// are refused before the directory is asked, and so is a canonical name it refuses.
pub fn canonical(typed: &str) -> Result<Canonical, Error> {
    encode(typed)?;
    let entry = User::from_name(typed).map_err(|errno| {
        Error::Lookup(format!(
            "the user directory failed to look up {}: {}",
            field("user", typed),
            errno.desc()
        ))
    })?;
    let Some(entry) = entry else {
        return Ok(Canonical::Unknown);
    };
    encode(&entry.name).map_err(|e| {
        Error::Lookup(format!(
            "the user directory answered {} with {}: {e}",
            field("user", typed),
            field("canonical", &entry.name)
        ))
    })?;
    Ok(Canonical::Known {
        aliased: entry.name != typed,
        name: entry.name,
    })
}

/// Longer names are refused (Linux allows 32; directory services allow more).
pub const MAX_USER_BYTES: usize = 128;

/// `alice` → `alice`; anything outside `[A-Za-z0-9_.@-]`, and a leading `.`, is written `%XX`,
/// so every name maps to exactly one safe file name and back.
pub fn encode(user: &str) -> Result<OsString, Error> {
    if user.is_empty() {
        return Err(Error::InvalidUser("empty".into()));
    }
    if user.len() > MAX_USER_BYTES {
        return Err(Error::InvalidUser(format!(
            "longer than {MAX_USER_BYTES} bytes"
        )));
    }
    let mut out = String::with_capacity(user.len());
    for (i, b) in user.bytes().enumerate() {
        let plain =
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@') || (b == b'.' && i > 0);
        if plain {
            out.push(char::from(b));
        } else if b == 0 || b.is_ascii_control() {
            return Err(Error::InvalidUser("contains a control character".into()));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(OsString::from(out))
}

/// The inverse of [`encode`]; `None` for names `encode` would not produce.
pub fn decode(file_stem: &str) -> Option<String> {
    let bytes = file_stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = file_stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let user = String::from_utf8(out).ok()?;
    (encode(&user).ok()?.to_str()? == file_stem).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_plain() {
        for name in [
            "alice",
            "bob.smith",
            "svc-backup",
            "user@example.com",
            "a_b",
        ] {
            assert_eq!(encode(name).unwrap(), name);
            assert_eq!(decode(name).as_deref(), Some(name));
        }
    }

    #[test]
    fn hostile_names_cannot_escape_the_directory() {
        for name in [
            "../etc/shadow",
            "..",
            ".hidden",
            "a/b",
            "DOMAIN\\user",
            "é",
            "sp ace",
        ] {
            let encoded = encode(name).unwrap();
            let encoded = encoded.to_str().unwrap();
            assert!(
                !encoded.contains('/') && !encoded.starts_with('.'),
                "{name} -> {encoded}"
            );
            assert_eq!(decode(encoded).as_deref(), Some(name));
        }
    }

    #[test]
    fn canonical_names_come_from_the_directory() {
        assert_eq!(
            canonical("root").unwrap(),
            Canonical::Known {
                name: "root".into(),
                aliased: false
            }
        );
        assert_eq!(
            canonical("no-such-user-twostep").unwrap(),
            Canonical::Unknown
        );
        assert!(canonical("").is_err());
        assert!(canonical("a\nb").is_err());
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(encode("").is_err());
        assert!(encode("a\nb").is_err());
        assert!(encode(&"x".repeat(MAX_USER_BYTES + 1)).is_err());
        assert_eq!(decode("%2"), None);
        assert_eq!(decode("%61"), None, "'a' is never encoded");
    }
}
