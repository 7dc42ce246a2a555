//! One-prompt mode: the answer is the password immediately followed by the code, for services
//! that show a single password field (web forms, FTP, VPN, mail).

use zeroize::Zeroizing;

use crate::emergency;

/// The two halves of a combined answer.
#[derive(Debug)]
pub struct Split {
    pub password: Zeroizing<Vec<u8>>,
    pub code: Zeroizing<Vec<u8>>,
}

/// Splits `token` into password and code. The code is, in this order of preference:
/// a dashed emergency code (`abcd-efgh-jkmn`, 14 characters); the last `digits` characters
/// when they are all digits (a TOTP code); a 12-character emergency code without dashes.
/// Otherwise the last `digits` bytes are taken, and will not verify.
pub fn split(token: &[u8], digits: u8) -> Split {
    let digits = usize::from(digits);
    let dashed = emergency::CODE_CHARS + 2;
    let cut = if tail(token, dashed).is_some_and(is_dashed_emergency) {
        token.len() - dashed
    } else if tail(token, digits).is_some_and(|suffix| suffix.iter().all(u8::is_ascii_digit)) {
        token.len() - digits
    } else if tail(token, emergency::CODE_CHARS)
        .is_some_and(|suffix| suffix.iter().all(|&b| emergency::is_code_char(b)))
    {
        token.len() - emergency::CODE_CHARS
    } else {
        token.len().saturating_sub(digits)
    };
    Split {
        password: Zeroizing::new(token[..cut].to_vec()),
        code: Zeroizing::new(token[cut..].to_vec()),
    }
}

fn tail(token: &[u8], len: usize) -> Option<&[u8]> {
    token.len().checked_sub(len).map(|start| &token[start..])
}

fn is_dashed_emergency(suffix: &[u8]) -> bool {
    suffix.iter().enumerate().all(|(i, &b)| {
        if i == 4 || i == 9 {
            b == b'-'
        } else {
            emergency::is_code_char(b)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(token: &str, digits: u8) -> (String, String) {
        let s = split(token.as_bytes(), digits);
        (
            String::from_utf8(s.password.to_vec()).unwrap(),
            String::from_utf8(s.code.to_vec()).unwrap(),
        )
    }

    #[test]
    fn password_then_totp() {
        assert_eq!(
            parts("hunter2123456", 6),
            ("hunter2".into(), "123456".into())
        );
        assert_eq!(parts("pw12345678", 8), ("pw".into(), "12345678".into()));
        assert_eq!(parts("123456", 6), ("".into(), "123456".into()));
    }

    #[test]
    fn password_then_emergency_code() {
        assert_eq!(
            parts("s3cret!abcd-efgh-jkmn", 6),
            ("s3cret!".into(), "abcd-efgh-jkmn".into())
        );
        assert_eq!(
            parts("s3cret!ABCDEFGHJKMN", 6),
            ("s3cret!".into(), "ABCDEFGHJKMN".into())
        );
    }

    #[test]
    fn short_or_odd_tokens_give_a_code_that_will_not_verify() {
        assert_eq!(parts("abc", 6), ("".into(), "abc".into()));
        assert_eq!(
            parts("password-only", 6),
            ("passwor".into(), "d-only".into())
        );
        let s = split(b"\xff\xfepass\x01", 6);
        assert_eq!(s.password.len() + s.code.len(), 7);
        assert_eq!(s.code.len(), 6);
    }
}
