//! twostep's core: everything the PAM module and the CLI share. No PAM and no terminal here,
//! and time always comes in as an argument, so all of it can be tested directly.
//!
//! No unsafe code either: the few system calls that need it are in `twostep-sys`, behind a
//! safe API.

#![forbid(unsafe_code)]

pub mod audit;
pub mod backend;
pub mod clock;
pub mod combined;
pub mod config;
pub mod dialogue;
pub mod email;
pub mod emergency;
pub mod enroll;
pub mod error;
pub mod gate;
pub mod import_ga;
pub mod lockout;
pub mod login;
pub mod manage;
pub mod module_args;
pub mod network;
pub mod otpauth;
pub mod policy;
pub mod qr;
pub mod random;
pub mod record;
pub mod securefs;
pub mod self_service;
pub mod slotfile;
pub mod store;
pub mod timefmt;
pub mod toml_subset;
pub mod totp;
pub mod username;

pub use error::Error;
