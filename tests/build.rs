//! Exports pam-drive's fake-clock functions from the executable's dynamic symbol table, so
//! that they interpose libc's for every library of the process, including the PAM modules that
//! libpam dlopen()s (see `src/bin/pam-drive.rs`).
//!
//! Also builds `libnss_twostepci.so` from `nss/twostepci.c` with the system C compiler: the
//! case-insensitive NSS source that `twostep_tests::nss` loads through nss_wrapper.

use std::process::Command;

fn main() {
    let list = "src/bin/pam-drive.dynlist";
    println!("cargo:rerun-if-changed={list}");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-Wl,--dynamic-list={dir}/{list}");

    let source = "nss/twostepci.c";
    println!("cargo:rerun-if-changed={source}");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let library = format!("{out}/libnss_twostepci.so");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&compiler)
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&library)
        .arg(format!("{dir}/{source}"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {compiler}: {e}"));
    assert!(status.success(), "{compiler} failed to build {library}");
    println!("cargo:rustc-env=TWOSTEP_TEST_NSS_MODULE={library}");
}
