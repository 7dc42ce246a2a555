//! The unsafe system calls of twostep's core, each behind a safe function with its `SAFETY`
//! argument, so that `twostep-common` can `#![forbid(unsafe_code)]` (as sudo-rs keeps its libc
//! calls in its `system` module). Keep this crate small: what can be done with `std` or `nix`'s
//! safe wrappers belongs in common.

#[cfg(feature = "pam")]
pub mod pam_password;
pub mod passwd;
pub mod process;
