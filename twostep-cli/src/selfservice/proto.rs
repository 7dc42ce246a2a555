//! What `twostep self` and `twostep serve-self` say to each other over the Unix socket: one
//! request line of JSON, one response line. No request names a user: the service acts for the
//! peer the kernel names (SO_PEERCRED). Unknown fields are refused, so that a request cannot
//! even try to say whom it is for.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The socket the service listens on, and the client's default.
pub const DEFAULT_SOCKET: &str = "/run/twostep/self.sock";
/// The client's socket when `--socket` is not given (tests, the Cockpit page's wrapper).
pub const SOCKET_ENV: &str = "TWOSTEP_SELF_SOCKET";
/// A request line longer than this is refused unread.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// A response holds at most a QR code as SVG and fifty emergency codes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// How a user proves the second factor for a change: an app code, an emailed code or an
/// emergency code, typed as at a login.
pub type Code = Zeroizing<String>;
pub type Password = Zeroizing<String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Totp,
    Email,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    // Empty braces, not unit variants: serde's internally tagged unit variants would accept
    // unknown fields (`{"op":"status","user":"bob"}`).
    Status {},
    History {},
    /// Step 1 of turning two-step login on: a new key (or a mailed code to `email`) waits in
    /// the store's `enrolling/` under an id.
    EnableBegin {
        password: Password,
        method: Method,
        #[serde(default)]
        email: Option<String>,
    },
    /// Step 2: the code from the new key (or the mail) switches it on.
    EnableConfirm {
        id: String,
        code: Code,
    },
    Codes {
        password: Password,
        code: Code,
    },
    AddDevice {
        password: Password,
        code: Code,
    },
    /// Step 1 of a new recovery address: a code is mailed to `address`.
    EmailBegin {
        password: Password,
        code: Code,
        address: String,
    },
    /// Step 2: the mailed code saves the address.
    EmailConfirm {
        id: String,
        code: Code,
    },
    Disable {
        password: Password,
        code: Code,
    },
    /// Mails a login code, to use as the current code of a change.
    SendCode {
        password: Password,
    },
}

impl Request {
    /// The action's name in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status {} => "status",
            Request::History {} => "history",
            Request::EnableBegin { .. } => "enable-begin",
            Request::EnableConfirm { .. } => "enable-confirm",
            Request::Codes { .. } => "codes",
            Request::AddDevice { .. } => "add-device",
            Request::EmailBegin { .. } => "email-begin",
            Request::EmailConfirm { .. } => "email-confirm",
            Request::Disable { .. } => "disable",
            Request::SendCode { .. } => "send-code",
        }
    }
}

/// Why a request failed; the client's `--json` prints it as `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    WrongPassword,
    WrongCode,
    Locked,
    /// The admin's policy or config does not allow it.
    Refused,
    NotEnrolled,
    AlreadyEnrolled,
    /// The id of a begun step is unknown or too old.
    Expired,
    /// A rate limit, or the service is busy with this user's other connections.
    Limited,
    /// The service cannot be reached.
    Unavailable,
    /// The request itself is bad.
    Invalid,
    /// Something broke on the service's side; its log says what.
    Error,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::WrongPassword => "wrong-password",
            Kind::WrongCode => "wrong-code",
            Kind::Locked => "locked",
            Kind::Refused => "refused",
            Kind::NotEnrolled => "not-enrolled",
            Kind::AlreadyEnrolled => "already-enrolled",
            Kind::Expired => "expired",
            Kind::Limited => "limited",
            Kind::Unavailable => "unavailable",
            Kind::Invalid => "invalid",
            Kind::Error => "error",
        }
    }
}

/// A failed request: the kind, and a sentence for the user that says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    /// For the service's log only (a store or SMTP error); never sent.
    #[serde(skip)]
    pub detail: Option<String>,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: String) -> Failure {
        self.detail = Some(detail);
        self
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    Ok(serde_json::Value),
    Error(Failure),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_no_user_and_unknown_fields_are_refused() {
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r.name(), "status");
        for bad in [
            r#"{"op":"status","user":"bob"}"#,
            r#"{"op":"codes","password":"p","code":"1","user":"bob"}"#,
            r#"{"op":"enable-confirm","id":"x","code":"1","uid":0}"#,
            r#"{"op":"nonsense"}"#,
            r#"{"op":"codes","password":"p"}"#,
            r#"[]"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_round_trip() {
        let text =
            serde_json::to_string(&Response::Error(Failure::new(Kind::WrongCode, "no"))).unwrap();
        assert_eq!(text, r#"{"error":{"kind":"wrong-code","message":"no"}}"#);
        let back: Response = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Response::Error(f) if f.kind == Kind::WrongCode));
    }
}
