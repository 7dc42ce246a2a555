//! What can go wrong with the fleet's database and key, by kind. The CLI reports it
//! ([`crate::error::CliError::Fleet`]); serve-store logs it and answers it as text (never a
//! statement's parameters, never a key).

use std::fmt;

#[derive(Debug)]
pub enum FleetError {
    /// A `[store]` setting that cannot be used (the URL, the password file, the CA file, TLS).
    Setting(String),
    /// The database could not be reached; with the causes the client reported.
    Connect(String),
    /// A statement failed: the server's message and SQLSTATE, or the client's error.
    Database(String),
    /// The schema is missing, or of another version than this twostep's.
    Schema(String),
    /// The fleet key file is missing, unsafe, of the wrong size, or cannot be created.
    KeyFile(String),
    /// The fleet key is not this fleet's (the key check), or does not open a sealed value.
    WrongKey(String),
    /// A row that does not read, or whose columns do not fit together.
    Row(String),
    /// The random source or the cipher failed, or twostep misused its own types (a bug).
    Internal(String),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Setting(why)
            | FleetError::Connect(why)
            | FleetError::Database(why)
            | FleetError::Schema(why)
            | FleetError::KeyFile(why)
            | FleetError::WrongKey(why)
            | FleetError::Row(why)
            | FleetError::Internal(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for FleetError {}

/// serve-store's answers are text.
impl From<FleetError> for String {
    fn from(e: FleetError) -> String {
        e.to_string()
    }
}
