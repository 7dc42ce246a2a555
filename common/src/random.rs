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

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
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
    }

    #[test]
    fn index_stays_in_range() {
        for _ in 0..1000 {
            assert!(index(32).unwrap() < 32);
            assert!(index(10).unwrap() < 10);
        }
    }
}
