//! What the programs that drive the real libpam share: the tests' `pam-drive` and the
//! benchmark `twostep-bench` (and, for the TOML comparison, common's tests and the fuzz crate).
//!
//! - [`fake_clock`]: a wall clock interposed over libc's for the whole process, PAM modules
//!   included. An executable defines the interposers with [`export_fake_clock!`] and exports
//!   them from its dynamic symbol table (`-Wl,--dynamic-list`, in its `build.rs`).
//! - [`pam_client`]: the application side of libpam (pam_start … pam_end, the conversation).
//! - [`dev_log`]: a private `/dev` whose `log` is the caller's socket.
//! - [`pg_server`]: a PostgreSQL server of the fleet tests' and the bench's own.
//! - [`qr_decode`]: the QR tests' zbarimg decoding, temporary directory and long URIs.
//! - `toml_compare` (feature `toml`): twostep's TOML codec in the `toml` crate's terms.

pub mod dev_log;
pub mod fake_clock;
pub mod pam_client;
pub mod pg_server;
pub mod qr_decode;
#[cfg(feature = "toml")]
pub mod toml_compare;

#[doc(hidden)]
pub use libc as __libc;
