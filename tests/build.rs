//! Exports pam-drive's fake-clock functions from the executable's dynamic symbol table, so
//! that they interpose libc's for every library of the process, including the PAM modules that
//! libpam dlopen()s (see `src/bin/pam-drive.rs`).

fn main() {
    let list = "src/bin/pam-drive.dynlist";
    println!("cargo:rerun-if-changed={list}");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-Wl,--dynamic-list={dir}/{list}");
}
