//! `otpauth://` URIs, the format authenticator apps read from QR codes. Unlike
//! google-authenticator-libpam's, ours always carry algorithm, digits and period, so apps
//! cannot silently assume SHA1/6/30.

use zeroize::Zeroizing;

use crate::totp::{self, Params};

pub fn totp_uri(issuer: &str, account: &str, key: &[u8], params: Params) -> Zeroizing<String> {
    let issuer_enc = encode(issuer);
    let secret = totp::encode_secret(key);
    Zeroizing::new(format!(
        "otpauth://totp/{issuer_enc}:{account}?secret={secret}&issuer={issuer_enc}&algorithm={alg}&digits={digits}&period={period}",
        account = encode(account),
        secret = secret.as_str(),
        alg = params.algorithm.name(),
        digits = params.digits,
        period = params.period,
    ))
}

/// `JBSWY3DPEHPK3PXP` → `JBSW Y3DP EHPK 3PXP`, for typing a key into an app by hand.
pub fn key_groups(base32: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(base32.len() * 5 / 4 + 1));
    for (i, c) in base32.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::Algorithm;

    #[test]
    fn keys_are_grouped_by_four() {
        assert_eq!(*key_groups("JBSWY3DPEHPK3PXP"), "JBSW Y3DP EHPK 3PXP");
        assert_eq!(*key_groups("ABCDE"), "ABCD E");
        assert_eq!(*key_groups(""), "");
    }

    #[test]
    fn uri_carries_every_parameter() {
        let key = totp::decode_secret("JBSWY3DPEHPK3PXP").unwrap();
        let params = Params {
            algorithm: Algorithm::Sha256,
            digits: 8,
            period: 60,
        };
        let uri = totp_uri("My NAS", "alice@nas", &key, params);
        assert_eq!(
            *uri,
            "otpauth://totp/My%20NAS:alice%40nas?secret=JBSWY3DPEHPK3PXP&issuer=My%20NAS&algorithm=SHA256&digits=8&period=60"
        );
    }
}
