//! The password database, for what `nix` has no safe wrapper for.

use std::ffi::CStr;

/// The names of the users whose primary group is `gid`, by walking the password database.
///
/// Uses the process-global getpwent cursor (not thread-safe, and it disturbs another walk in
/// progress): call it from the admin command, never from the module.
pub fn users_with_primary_group(gid: libc::gid_t) -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: setpwent/getpwent/endpwent are used by this single thread as a unit; each
    // returned entry is read (name copied) before the next call invalidates it, and a null
    // pointer ends the walk.
    unsafe {
        libc::setpwent();
        loop {
            let entry = libc::getpwent();
            if entry.is_null() {
                break;
            }
            if (*entry).pw_gid == gid && !(*entry).pw_name.is_null() {
                names.push(
                    CStr::from_ptr((*entry).pw_name)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        libc::endpwent();
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_group_0() {
        assert!(users_with_primary_group(0).iter().any(|n| n == "root"));
    }
}
