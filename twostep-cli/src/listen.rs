//! The root services' listening sockets (`serve-self`, `serve-store`): the one systemd passes
//! by socket activation, or one bound here with safe ownership and modes.

use crate::error::CliError;
use std::io::ErrorKind;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::sys::socket::{getsockopt, sockopt};

/// The socket systemd passed (fd 3, `LISTEN_FDS=1` for this pid), if it passed one.
pub fn passed_socket() -> Result<Option<UnixListener>, CliError> {
    let for_us = std::env::var("LISTEN_PID").is_ok_and(|p| p == std::process::id().to_string());
    if !for_us {
        return Ok(None);
    }
    if std::env::var("LISTEN_FDS").as_deref() != Ok("1") {
        return Err(CliError::refused(
            "systemd passed other than one socket (LISTEN_FDS); the unit must have one \
             ListenStream",
        ));
    }
    // SAFETY: by the sd_listen_fds protocol, LISTEN_PID naming this process means that fd 3 is
    // an open socket handed to it; nothing else in this process owns fd 3, and it is taken once.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    let kind =
        getsockopt(&fd, sockopt::SockType).map_err(|e| CliError::refused(format!("fd 3: {e}")))?;
    if kind != nix::sys::socket::SockType::Stream {
        return Err(CliError::refused(
            "the socket systemd passed is not a stream socket",
        ));
    }
    let listener = UnixListener::from(fd);
    listener
        .local_addr()
        .map_err(|e| CliError::io("the socket systemd passed is not a Unix socket", e))?;
    Ok(Some(listener))
}

/// Binds `path` with `mode` (the services check who is asking through the kernel) in a
/// root-owned directory that only root can write (created 0755 if missing). A stale socket of
/// an earlier run is replaced; anything else at the path is refused, as is a live service there.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, CliError> {
    let dir = path
        .parent()
        .ok_or_else(|| CliError::refused(format!("{}: no directory", path.display())))?;
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .map_err(|e| CliError::io(format_args!("cannot create {}", dir.display()), e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| CliError::io(dir.display(), e))?;
        }
        Err(e) => return Err(CliError::io(dir.display(), e)),
        Ok(meta) => {
            if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
                return Err(CliError::Refused(format!(
                    "{} must be a directory owned by root that only root can write (not a \
                     symlink)",
                    dir.display()
                )));
            }
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() || meta.uid() != 0 {
            return Err(CliError::Refused(format!(
                "{} exists and is not a socket of root's; not replacing it",
                path.display()
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(CliError::Refused(format!(
                "a service is already listening on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| CliError::io(path.display(), e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| CliError::io(path.display(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| CliError::io(path.display(), e))?;
    Ok(listener)
}

/// Accepts connections for ever, handing each to `accept`. A failed accept (EMFILE and the
/// like) waits a moment instead of spinning; `service` names it in the message.
pub fn accept_loop(listener: &UnixListener, service: &str, mut accept: impl FnMut(UnixStream)) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => accept(stream),
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                eprintln!("twostep {service}: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(_) => {}
        }
    }
}
