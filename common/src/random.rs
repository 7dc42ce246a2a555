//! Randomness from the kernel (getrandom(2)); no user-space generator to seed or get wrong.

use zeroize::Zeroizing;

use crate::error::Error;

pub fn bytes(len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut buf = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut buf).map_err(|_| Error::Random)?;
    Ok(buf)
}

/// A uniformly chosen index below `n` (`n` ≤ 256), by rejection sampling.
pub fn index(n: usize) -> Result<usize, Error> {
    debug_assert!(n > 0 && n <= 256);
    let limit = 256 - (256 % n);
    loop {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).map_err(|_| Error::Random)?;
        if (b[0] as usize) < limit {
            return Ok(b[0] as usize % n);
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (either case); `None` for an odd length or a character that is
/// not a hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 2 != 0 {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// Whether [`unhex`] would decode `text`, without making the bytes.
pub fn is_hex(text: &str) -> bool {
    text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("FF0a"), Some(vec![255, 10]));
        assert_eq!(unhex(""), Some(vec![]));
        // from_str_radix, used before, took a sign: "+f" is not hex.
        for bad in ["+f", "-1", " f", "f ", "0x", "\u{e9}"] {
            assert_eq!(unhex(bad), None, "{bad:?}");
            assert!(!is_hex(bad), "{bad:?}");
        }
        for good in ["", "00", "ff10", "ABcd"] {
            assert!(is_hex(good), "{good:?}");
        }
    }

    #[test]
    fn index_stays_in_range() {
        for _ in 0..1000 {
            assert!(index(32).unwrap() < 32);
            assert!(index(10).unwrap() < 10);
        }
    }
}
