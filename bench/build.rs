//! Exports the bench's fake-clock functions from the executable's dynamic symbol table, so that
//! they interpose libc's for the PAM modules libpam dlopen()s (the same trick as the tests'
//! pam-drive).

fn main() {
    let list = "src/bench.dynlist";
    println!("cargo:rerun-if-changed={list}");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-Wl,--dynamic-list={dir}/{list}");
}
