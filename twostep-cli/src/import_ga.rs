//! `twostep import-google-authenticator`: move a google-authenticator-libpam user to twostep
//! with the same key, so their authenticator app keeps working and their remaining scratch
//! codes stay valid.
//!
//! The file lives in the user's home directory and belongs to the user, who controls what it
//! is (a symlink to `/etc/shadow`, a FIFO, a hard link to someone else's file). Root never
//! opens it: a child process drops to the user's uid, gid and groups, opens it with
//! `O_NOFOLLOW`, checks it through the open descriptor, and sends at most 64 KiB through a
//! pipe. The parent, still root, only parses those bytes. A file named on the command line is
//! read the same way, as the user.

use crate::error::CliError;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Args;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::stat::{Mode, fstat};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, User, fork};
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::Config;
use twostep_common::import_ga::{self, Imported, MAX_FILE_BYTES};
use twostep_common::manage;
use twostep_common::remote::LoginStore;
use twostep_common::username;
use zeroize::Zeroizing;

use crate::output::{audit, print_emergency_codes};

const DEFAULT_FILE: &str = ".google_authenticator";
/// A reader stuck on a hung network home directory is killed (SIGALRM) after this long.
const READ_TIMEOUT_SECS: u32 = 30;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The login name to import
    pub user: String,

    /// The google-authenticator file [default: ~USER/.google_authenticator]; it is read with
    /// USER's rights and must be a regular file owned by USER
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Replace an existing twostep enrollment of USER
    #[arg(long)]
    pub force: bool,
}

pub fn run(config: &Config, args: &ImportArgs) -> Result<(), CliError> {
    let user = &args.user;
    username::encode(user)?;
    let account = User::from_name(user)
        .map_err(|e| CliError::sys(format_args!("cannot look up user {user}"), e))?
        .ok_or_else(|| CliError::Refused(format!("no such user: {user}")))?;
    let path = match &args.file {
        Some(file) => std::path::absolute(file).map_err(|e| CliError::io(file.display(), e))?,
        None => {
            if !account.dir.is_absolute() {
                return Err(CliError::Refused(format!(
                    "the home directory of {user} is not an absolute path; name the file"
                )));
            }
            account.dir.join(DEFAULT_FILE)
        }
    };

    // Before the state directory is opened: the reader child inherits no descriptor of it.
    let bytes = read_as_user(&account, &path)?;
    let imported = import_ga::parse(&bytes)
        .map_err(|e| CliError::Refused(format!("{}: {e}", path.display())))?;
    drop(bytes);

    let store = LoginStore::open_admin(config)?;
    let new = import_ga::to_enrollment(config, user, &imported, SystemClock.now())?;
    if !manage::store_enrollment(&store, &new.record, args.force)? {
        return Err(CliError::Refused(format!(
            "{user} is already enrolled in twostep; use --force to replace that enrollment \
             with the imported one"
        )));
    }
    audit(config, "import", user);

    report(config, user, &path, &imported);
    print_emergency_codes(&new.emergency_codes);
    Ok(())
}

fn report(config: &Config, user: &str, path: &Path, imported: &Imported) {
    println!(
        "Imported {user} from {}: TOTP, SHA1, 6 digits, {} s, same key as before.",
        path.display(),
        imported.period
    );
    match imported.window_size {
        Some(window) => println!(
            "Window: WINDOW_SIZE {window} -> ±{} {} (stored in the record).",
            imported.skew,
            steps(imported.skew)
        ),
        None => println!(
            "Window: no WINDOW_SIZE (google-authenticator's ±1 step) -> the config's \
             totp.skew, now ±{} {}.",
            config.totp.skew,
            steps(config.totp.skew)
        ),
    }
    println!(
        "Scratch codes carried over: {} (8 digits, each works once, as before).",
        imported.scratch_codes.len()
    );
    if !imported.notes.is_empty() {
        println!("Notes:");
        for note in &imported.notes {
            println!("  - {note}");
        }
    }
    println!(
        "The user's authenticator app keeps working unchanged. Once {user} has logged in \
         through twostep, remove pam_google_authenticator from the PAM configuration and \
         delete {} (it still holds the key and the scratch codes).",
        path.display()
    );
    println!("New twostep emergency codes are issued as well; the old scratch codes keep working.");
}

fn steps(n: u8) -> &'static str {
    if n == 1 { "step" } else { "steps" }
}

/// Why the reader child gave up: its exit status. 0 is success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    DropPrivileges = 10,
    RegainedRoot = 11,
    Missing = 12,
    Symlink = 13,
    Denied = 14,
    NotDirectory = 15,
    Open = 16,
    Stat = 17,
    NotRegular = 18,
    Owner = 19,
    Links = 20,
    Writable = 21,
    TooLarge = 22,
    Read = 23,
    Pipe = 24,
    Panic = 25,
}

impl Refusal {
    const ALL: [Refusal; 16] = [
        Refusal::DropPrivileges,
        Refusal::RegainedRoot,
        Refusal::Missing,
        Refusal::Symlink,
        Refusal::Denied,
        Refusal::NotDirectory,
        Refusal::Open,
        Refusal::Stat,
        Refusal::NotRegular,
        Refusal::Owner,
        Refusal::Links,
        Refusal::Writable,
        Refusal::TooLarge,
        Refusal::Read,
        Refusal::Pipe,
        Refusal::Panic,
    ];

    fn from_status(status: i32) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| *r as i32 == status)
    }

    fn message(self, user: &str, path: &Path) -> String {
        let p = path.display();
        match self {
            Refusal::DropPrivileges | Refusal::RegainedRoot => {
                format!("could not switch to {user}'s identity to read {p}; nothing was read")
            }
            Refusal::Missing => format!(
                "{p} does not exist: {user} has no google-authenticator file there (if the \
                 PAM line sets secret=..., name that file)"
            ),
            Refusal::Symlink => format!(
                "{p} is a symbolic link; refused (it must be a regular file owned by {user})"
            ),
            Refusal::Denied => format!(
                "{user} cannot read {p} (permission denied); the file is read with {user}'s \
                 own rights"
            ),
            Refusal::NotDirectory => format!("{p}: a component of the path is not a directory"),
            Refusal::Open => format!("cannot open {p} as {user}"),
            Refusal::Stat => format!("cannot examine {p}"),
            Refusal::NotRegular => format!("{p} is not a regular file; refused"),
            Refusal::Owner => format!(
                "{p} is not owned by {user}; refused (google-authenticator requires that too)"
            ),
            Refusal::Links => format!("{p} has more than one hard link; refused"),
            Refusal::Writable => format!("{p} is writable by group or others; refused"),
            Refusal::TooLarge => {
                format!("{p} is larger than {} KiB; refused", MAX_FILE_BYTES / 1024)
            }
            Refusal::Read => format!("cannot read {p} as {user}"),
            Refusal::Pipe => format!("{p} could not be handed over (it grew while being read?)"),
            Refusal::Panic => format!("reading {p} failed unexpectedly"),
        }
    }
}

/// Everything the child needs, prepared before `fork` so the child allocates nothing.
struct ReadAs<'a> {
    path: &'a CString,
    uid: Uid,
    gid: Gid,
}

/// Reads `path` as `account` in a child process; at most [`MAX_FILE_BYTES`].
fn read_as_user(account: &User, path: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        CliError::Usage(format!("{}: the path contains a NUL byte", path.display()))
    })?;
    let spec = ReadAs {
        path: &c_path,
        uid: account.uid,
        gid: account.gid,
    };
    // The buffer is allocated before the fork too: the parent fills it without growing it, so
    // no copy of the key is left behind in freed memory.
    let mut buffer = Zeroizing::new(vec![0u8; MAX_FILE_BYTES + 1]);
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| CliError::sys("pipe", e))?;

    // SAFETY: between `fork` and `_exit` the child only makes plain system calls through
    // nix's thin wrappers (setgroups, setgid, setuid, prctl, alarm, open, fstat, read, write,
    // close) on values prepared above; it allocates nothing, takes no lock and never returns
    // into the caller's frames (`child` ends in `_exit`, panics included), so it cannot trip
    // over state another thread of the parent held at the time of the fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(read_end);
            child(&spec, write_end)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            let filled = fill(&read_end, &mut buffer);
            // Closing the read end first: a child still writing gets EPIPE instead of hanging.
            drop(read_end);
            let status = reap(child);
            finish(&account.name, path, status, filled, buffer)
        }
        Err(e) => Err(CliError::sys("fork", e)),
    }
}

fn finish(
    user: &str,
    path: &Path,
    status: Result<WaitStatus, Errno>,
    filled: Result<usize, Errno>,
    mut buffer: Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let p = path.display();
    match status.map_err(|e| CliError::sys(format_args!("waiting for the reader of {p}"), e))? {
        WaitStatus::Exited(_, 0) => {}
        WaitStatus::Exited(_, code) => {
            return Err(CliError::Refused(match Refusal::from_status(code) {
                Some(refusal) => refusal.message(user, path),
                None => format!("the reader of {p} failed (status {code})"),
            }));
        }
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGALRM, _) => {
            return Err(CliError::Refused(format!(
                "reading {p} took more than {READ_TIMEOUT_SECS} s; gave up"
            )));
        }
        WaitStatus::Signaled(_, signal, _) => {
            return Err(CliError::Refused(format!(
                "the reader of {p} was killed by {signal}"
            )));
        }
        other => {
            return Err(CliError::Refused(format!(
                "the reader of {p} ended oddly: {other:?}"
            )));
        }
    }
    let filled =
        filled.map_err(|e| CliError::sys(format_args!("reading {p} from the reader"), e))?;
    if filled > MAX_FILE_BYTES {
        return Err(CliError::Refused(Refusal::TooLarge.message(user, path)));
    }
    buffer.truncate(filled);
    Ok(buffer)
}

/// Reads the pipe until end of file or until `buffer` is full; the byte count.
fn fill(pipe: &OwnedFd, buffer: &mut [u8]) -> Result<usize, Errno> {
    let mut filled = 0;
    while filled < buffer.len() {
        match nix::unistd::read(pipe.as_fd(), &mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn reap(child: Pid) -> Result<WaitStatus, Errno> {
    loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// The forked child: never returns.
fn child(spec: &ReadAs<'_>, out: OwnedFd) -> ! {
    let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match child_read(spec, &out) {
            Ok(()) => 0,
            Err(refusal) => refusal as i32,
        }
    }))
    .unwrap_or(Refusal::Panic as i32);
    // SAFETY: `_exit` ends the child at once; unlike `exit` it runs no atexit handlers and
    // flushes no stdio buffers copied from the parent. It takes no pointers.
    unsafe { libc::_exit(status) }
}

fn child_read(spec: &ReadAs<'_>, out: &OwnedFd) -> Result<(), Refusal> {
    nix::unistd::alarm::set(READ_TIMEOUT_SECS);
    if !spec.uid.is_root() {
        drop_privileges(spec.uid, spec.gid)?;
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let file =
        nix::fcntl::open(spec.path.as_c_str(), flags, Mode::empty()).map_err(|e| match e {
            Errno::ENOENT => Refusal::Missing,
            Errno::ELOOP => Refusal::Symlink,
            Errno::EACCES | Errno::EPERM => Refusal::Denied,
            Errno::ENOTDIR => Refusal::NotDirectory,
            _ => Refusal::Open,
        })?;
    let stat = fstat(file.as_fd()).map_err(|_| Refusal::Stat)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Refusal::NotRegular);
    }
    if stat.st_uid != spec.uid.as_raw() {
        return Err(Refusal::Owner);
    }
    if stat.st_nlink != 1 {
        return Err(Refusal::Links);
    }
    if stat.st_mode & (libc::S_IWGRP | libc::S_IWOTH) != 0 {
        return Err(Refusal::Writable);
    }
    if stat.st_size < 0 || stat.st_size > MAX_FILE_BYTES as i64 {
        return Err(Refusal::TooLarge);
    }
    let mut chunk = [0u8; 4096];
    let mut total = 0usize;
    let result = loop {
        let n = match nix::unistd::read(file.as_fd(), &mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(_) => break Err(Refusal::Read),
        };
        total += n;
        if total > MAX_FILE_BYTES {
            break Err(Refusal::TooLarge);
        }
        if write_all(out, chunk.get(..n).unwrap_or_default()).is_err() {
            break Err(Refusal::Pipe);
        }
    };
    chunk.fill(0);
    result
}

fn write_all(out: &OwnedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(out.as_fd(), bytes) {
            Ok(0) => return Err(Errno::EPIPE),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Becomes `uid`/`gid` with no supplementary groups but `gid`, for good, and checks that root
/// cannot be regained.
fn drop_privileges(uid: Uid, gid: Gid) -> Result<(), Refusal> {
    use nix::unistd::{getresgid, getresuid, setgid, setgroups, setuid};
    setgroups(&[gid]).map_err(|_| Refusal::DropPrivileges)?;
    setgid(gid).map_err(|_| Refusal::DropPrivileges)?;
    setuid(uid).map_err(|_| Refusal::DropPrivileges)?;
    // The user may not attach a debugger to this process and read the parent's memory copy.
    // (The kernel already clears the flag on the uid change unless fs.suid_dumpable says
    // otherwise.)
    nix::sys::prctl::set_dumpable(false).map_err(|_| Refusal::DropPrivileges)?;
    let uids = getresuid().map_err(|_| Refusal::DropPrivileges)?;
    let gids = getresgid().map_err(|_| Refusal::DropPrivileges)?;
    if [uids.real, uids.effective, uids.saved] != [uid; 3]
        || [gids.real, gids.effective, gids.saved] != [gid; 3]
    {
        return Err(Refusal::DropPrivileges);
    }
    if setuid(Uid::from_raw(0)).is_ok() || nix::unistd::seteuid(Uid::from_raw(0)).is_ok() {
        return Err(Refusal::RegainedRoot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_maps_back_from_its_status() {
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_status(refusal as i32), Some(refusal));
            let message = refusal.message("alice", Path::new("/home/alice/.google_authenticator"));
            assert!(
                message.contains("/home/alice/.google_authenticator"),
                "{message}"
            );
        }
        assert_eq!(Refusal::from_status(0), None);
        assert_eq!(Refusal::from_status(1), None);
    }
}
