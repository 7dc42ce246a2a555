//! Opening, reading and replacing root-owned files without trusting anything a non-root user
//! could have touched.
//!
//! Paths are walked one component at a time from `/` with `O_NOFOLLOW`, so a symlink anywhere on
//! the path is refused rather than followed, and every directory is checked through the file
//! descriptor that was opened (no check-then-open race). The lessons are pam_oath's
//! CVE-2024-47191 and google-authenticator-libpam's user-owned state file.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{
    AT_FDCWD, Flock, FlockArg, OFlag, OpenHow, ResolveFlag, openat, openat2, renameat,
};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, lstat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};
use zeroize::Zeroizing;

use crate::error::Error;

/// How open a file's permission bits may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Group and others may read, never write (the config file).
    Readable,
    /// No group or other bits at all (records, locks, state directories).
    Private,
}

/// How often a file replaced while being opened is opened again before giving up.
const REOPEN_TRIES: usize = 5;

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// An open directory together with the path it was reached by (for messages only).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the absolute directory `path`. Every directory above it must be owned by root and
    /// not writable by group or others (root-owned sticky directories such as /tmp are
    /// accepted: others cannot rename or remove what root created there); the directory itself
    /// must satisfy `access`. `Ok(None)` when some component does not exist.
    pub fn open(path: &Path, access: Access) -> Result<Option<Dir>, Error> {
        let names = normal_components(path)?;
        if let Some(dir) = Dir::open_resolved(&names, Some(access))? {
            return Ok(Some(dir));
        }
        let mut dir = Dir::open_root()?;
        for (i, name) in names.iter().enumerate() {
            let is_last = i + 1 == names.len();
            let wanted = if is_last { Some(access) } else { None };
            match dir.open_subdir(name, wanted)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        if names.is_empty() {
            check_dir(&dir.path, &fstat_at(&dir.fd, &dir.path)?, Some(access))?;
        }
        Ok(Some(dir))
    }

    /// The fast path of [`Dir::open`] and [`Dir::open_ancestors`] (issue 17 §3): one
    /// `openat2(2)` with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` opens the directory
    /// `names` lead to, refusing a symlink on any component; `access` is checked on that
    /// descriptor, and its ancestors — those it is in now, reached by `..` from it, which
    /// is never a symlink — each with one `fstatat` under the ancestor rule (`None`), the
    /// last of them required to be this process's `/`. Moving a directory to another parent
    /// needs write permission on it (its `..`) and on the new parent, and a sticky directory
    /// lets nobody but root rename root's entries; so when no directory on the chain and its
    /// parent are both writable by others (that pair, a sticky directory in a sticky one,
    /// sends the caller to the walk), no user but root can have moved the directory or
    /// anything above it, before or after the `openat2`, or swapped an entry on the way: it is
    /// the directory the path names and stays so, as after the walk, and a directory an
    /// attacker moved or planted sits below an ancestor that fails. `Ok(None)` also on any
    /// `openat2` error (kernels before 5.6, seccomp filters, a missing or symlinked
    /// component): the caller walks, which gives today's answers and messages.
    fn open_resolved(names: &[&OsStr], access: Option<Access>) -> Result<Option<Dir>, Error> {
        let mut path = PathBuf::from("/");
        path.extend(names);
        let how = OpenHow::new()
            .flags(DIR_FLAGS)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let Ok(fd) = openat2(AT_FDCWD, &path, how) else {
            return Ok(None);
        };
        let stat = fstat_at(&fd, &path)?;
        check_dir(&path, &stat, access)?;
        let mut below_writable = stat.st_mode & 0o022 != 0;
        let mut up = String::with_capacity(3 * names.len());
        let mut ancestor = path.clone();
        let mut top = None;
        for _ in names {
            up.push_str(if up.is_empty() { ".." } else { "/.." });
            ancestor.pop();
            let stat = fstatat(&fd, up.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| Error::io(&ancestor, "stat", e))?;
            check_dir(&ancestor, &stat, None)?;
            let writable = stat.st_mode & 0o022 != 0;
            if writable && below_writable {
                // A sticky directory (accepted for being sticky) in a sticky one: others could
                // have moved it here from where they write, and it would pass from here up.
                // The walk checks the path as it is resolved instead.
                return Ok(None);
            }
            below_writable = writable;
            top = Some(stat);
        }
        if let Some(top) = top {
            let root = lstat("/").map_err(|e| Error::io(Path::new("/"), "stat", e))?;
            if (top.st_dev, top.st_ino) != (root.st_dev, root.st_ino) {
                return Err(Error::unsafe_path(&path, "moved while being opened"));
            }
        }
        Ok(Some(Dir { fd, path }))
    }

    fn open_root() -> Result<Dir, Error> {
        let path = PathBuf::from("/");
        let fd = nix::fcntl::open("/", DIR_FLAGS, Mode::empty())
            .map_err(|e| Error::io(&path, "open", e))?;
        check_dir(&path, &fstat_at(&fd, &path)?, None)?;
        Ok(Dir { fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child_path(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Opens a directory directly below this one. `access: None` means "an ancestor": root
    /// owned, not writable by others unless sticky.
    pub fn open_subdir(&self, name: &OsStr, access: Option<Access>) -> Result<Option<Dir>, Error> {
        let path = self.child_path(name);
        let fd = match openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                return Err(Error::unsafe_path(
                    &path,
                    "not a directory (symlinks are not followed)",
                ));
            }
            Err(e) => return Err(Error::io(&path, "open directory", e)),
        };
        check_dir(&path, &fstat_at(&fd, &path)?, access)?;
        Ok(Some(Dir { fd, path }))
    }

    /// Opens the private subdirectory `name`, creating it (root, 0700) when missing.
    pub fn ensure_subdir(&self, name: &OsStr) -> Result<Dir, Error> {
        if let Some(dir) = self.open_subdir(name, Some(Access::Private))? {
            return Ok(dir);
        }
        match mkdirat(&self.fd, name, Mode::S_IRWXU) {
            // A new directory entry is only durable once its parent is synced.
            Ok(()) => self.fsync()?,
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::io(self.child_path(name), "create directory", e)),
        }
        self.open_subdir(name, Some(Access::Private))?
            .ok_or_else(|| Error::io(self.child_path(name), "open directory", Errno::ENOENT))
    }

    /// Opens a regular file in this directory for reading after checking it: root owned, one
    /// link, permission bits within `access`. `Ok(None)` when it does not exist.
    pub fn open_file(&self, name: &OsStr, access: Access) -> Result<Option<File>, Error> {
        Ok(self.open_file_stat(name, access)?.map(|(file, _)| file))
    }

    /// [`Dir::open_file`], also returning the status the checks were made on.
    pub fn open_file_stat(
        &self,
        name: &OsStr,
        access: Access,
    ) -> Result<Option<(File, FileStat)>, Error> {
        self.open_checked(name, access, OFlag::O_RDONLY)
    }

    /// [`Dir::open_file_stat`] for reading and writing in place (never creates).
    pub fn open_file_rw(
        &self,
        name: &OsStr,
        access: Access,
    ) -> Result<Option<(File, FileStat)>, Error> {
        self.open_checked(name, access, OFlag::O_RDWR)
    }

    fn open_checked(
        &self,
        name: &OsStr,
        access: Access,
        mode: OFlag,
    ) -> Result<Option<(File, FileStat)>, Error> {
        let path = self.child_path(name);
        // O_NONBLOCK: a FIFO planted here must not hang the login; it is refused below anyway.
        let flags = mode | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        for attempt in 1..=REOPEN_TRIES {
            let fd = match openat(&self.fd, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(None),
                Err(Errno::ELOOP) => return Err(Error::unsafe_path(&path, "is a symlink")),
                Err(e) => return Err(Error::io(&path, "open", e)),
            };
            let stat = fstat_at(&fd, &path)?;
            // No links left: a writer renamed a new version over the name after we opened it
            // (readers without the lock see this). The name holds the newer file: open it
            // again. If writers keep winning, the file we hold is still a whole earlier version
            // of a record only root writes, reached through checked directories; use it.
            let replaced = stat.st_nlink == 0;
            if replaced && attempt < REOPEN_TRIES {
                continue;
            }
            check_file(&path, &stat, access, replaced)?;
            return Ok(Some((File::from(fd), stat)));
        }
        Err(Error::unsafe_path(&path, "could not be opened"))
    }

    /// The status of the entry `name` (not following a symlink), checked like
    /// [`Dir::open_file`]; `Ok(None)` when there is none.
    pub fn stat_file(&self, name: &OsStr, access: Access) -> Result<Option<FileStat>, Error> {
        let path = self.child_path(name);
        let stat = match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(Error::io(&path, "stat", e)),
        };
        check_file(&path, &stat, access, false)?;
        Ok(Some(stat))
    }

    /// Reads a checked file whole, refusing files over `max` bytes. The buffer is wiped on drop
    /// because records hold secrets.
    pub fn read_file(
        &self,
        name: &OsStr,
        access: Access,
        max: u64,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        let Some((file, stat)) = self.open_file_stat(name, access)? else {
            return Ok(None);
        };
        let path = self.child_path(name);
        read_limited(&file, &path, max, stat.st_size).map(Some)
    }

    /// Reads an already opened and checked file whole (see [`Dir::read_file`]); `stat` is
    /// the status it was checked on.
    pub fn read_opened(
        &self,
        file: &File,
        stat: &FileStat,
        name: &OsStr,
        max: u64,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_limited(file, &self.child_path(name), max, stat.st_size)
    }

    /// Replaces `name` with `contents` atomically and durably: exclusive temp file (0600),
    /// write, fdatasync, rename over the old file, fsync the directory. A crash leaves either
    /// the old or the new file, never a mix. Callers serialize writers of one name (see
    /// [`Dir::lock`]); a temp file left by a crashed writer is removed and recreated.
    pub fn replace_file(&self, name: &OsStr, contents: &[u8]) -> Result<(), Error> {
        self.replace_file_mode(name, contents, Mode::S_IRUSR | Mode::S_IWUSR)
    }

    /// [`Dir::replace_file`] with the new file's permission bits (the config file keeps its
    /// 0644); group and other write bits are never set.
    pub fn replace_file_mode(
        &self,
        name: &OsStr,
        contents: &[u8],
        mode: Mode,
    ) -> Result<(), Error> {
        let mode = mode & !(Mode::S_IWGRP | Mode::S_IWOTH) & Mode::from_bits_truncate(0o777);
        let tmp_name = temp_name(name);
        let tmp_path = self.child_path(&tmp_name);
        let file = self.create_exclusive(&tmp_name, mode)?;
        let result = write_synced(file, &tmp_path, contents).and_then(|()| {
            renameat(&self.fd, tmp_name.as_os_str(), &self.fd, name)
                .map_err(|e| Error::io(self.child_path(name), "replace", e))
        });
        if result.is_err() {
            let _ = unlinkat(&self.fd, tmp_name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return result;
        }
        self.fsync()
    }

    fn create_exclusive(&self, tmp_name: &OsStr, mode: Mode) -> Result<File, Error> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let path = self.child_path(tmp_name);
        let fd = match openat(&self.fd, tmp_name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                // Left by a writer that crashed; we hold the per-name lock, so nobody else is
                // writing it. unlinkat never follows a symlink planted under that name.
                unlinkat(&self.fd, tmp_name, UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| Error::io(&path, "remove stale temp file", e))?;
                openat(&self.fd, tmp_name, flags, mode)
                    .map_err(|e| Error::io(&path, "create", e))?
            }
            Err(e) => return Err(Error::io(&path, "create", e)),
        };
        // The umask may have cleared bits we want, never added ones; make the mode exact.
        fchmod(&fd, mode).map_err(|e| Error::io(&path, "chmod", e))?;
        Ok(File::from(fd))
    }

    /// Removes `name` (a file) from this directory and makes that durable.
    pub fn remove_file(&self, name: &OsStr) -> Result<bool, Error> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {
                self.fsync()?;
                Ok(true)
            }
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::io(self.child_path(name), "remove", e)),
        }
    }

    /// Renames `name` here to `new_name` in `target` (same file system) and makes both
    /// directories durable.
    pub fn move_file(&self, name: &OsStr, target: &Dir, new_name: &OsStr) -> Result<(), Error> {
        renameat(&self.fd, name, &target.fd, new_name)
            .map_err(|e| Error::io(self.child_path(name), "move", e))?;
        target.fsync()?;
        self.fsync()
    }

    /// Takes an exclusive lock on the lock file `name`, creating it (root, 0600) if needed.
    /// Lock files are never unlinked: unlinking would let two processes lock different inodes.
    pub fn lock(&self, name: &OsStr) -> Result<Flock<File>, Error> {
        let path = self.child_path(name);
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, name, flags, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(Error::unsafe_path(&path, "is a symlink")),
            Err(e) => return Err(Error::io(&path, "open lock", e)),
        };
        check_file(&path, &fstat_at(&fd, &path)?, Access::Private, false)?;
        Flock::lock(File::from(fd), FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(&path, "lock", e))
    }

    /// Takes an exclusive lock on this directory itself (serializes writers of a file in a
    /// directory where no lock file should be created, such as /etc/twostep).
    pub fn lock_self(&self) -> Result<Flock<File>, Error> {
        let fd = openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| Error::io(&self.path, "open directory", e))?;
        Flock::lock(File::from(fd), FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(&self.path, "lock", e))
    }

    /// Names of the entries in this directory (not `.`/`..`), unsorted.
    pub fn entries(&self) -> Result<Vec<std::ffi::OsString>, Error> {
        let fd = openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| Error::io(&self.path, "open directory", e))?;
        let mut dir =
            nix::dir::Dir::from_fd(fd).map_err(|e| Error::io(&self.path, "list directory", e))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| Error::io(&self.path, "list directory", e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(names)
    }

    pub fn fsync(&self) -> Result<(), Error> {
        fsync(&self.fd).map_err(|e| Error::io(&self.path, "sync", e))
    }
}

/// Reads a root-owned file by absolute path with every directory above it checked; `Ok(None)`
/// when the file or a directory on its path does not exist.
pub fn read_root_file(
    path: &Path,
    max: u64,
    access: Access,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if !path.is_absolute() {
        return Err(Error::unsafe_path(path, "not an absolute path"));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::unsafe_path(path, "not a file path"));
    };
    let Some(dir) = Dir::open_ancestors(parent)? else {
        return Ok(None);
    };
    dir.read_file(name, access, max)
}

/// Checks that `path` is a program only root can change: a regular, executable file owned by
/// root and not writable by group or others, in directories with the same property, reached
/// without symlinks. (Hard links are allowed here: a link to a root-owned program gives no way
/// to change it, and build tools link their outputs.)
pub fn check_root_executable(path: &Path) -> Result<(), Error> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::unsafe_path(path, "not a file path"));
    };
    let dir =
        Dir::open_ancestors(parent)?.ok_or_else(|| Error::io(parent, "open", Errno::ENOENT))?;
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(&dir.fd, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(Error::io(path, "find", Errno::ENOENT)),
        Err(e) => return Err(Error::io(path, "open", e)),
    };
    let stat = fstat_at(&fd, path)?;
    match file_type(&stat) {
        t if t == SFlag::S_IFREG => {}
        t if t == SFlag::S_IFLNK => return Err(Error::unsafe_path(path, "is a symlink")),
        _ => return Err(Error::unsafe_path(path, "not a regular file")),
    }
    if stat.st_uid != 0 {
        return Err(Error::unsafe_path(path, "not owned by root"));
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::unsafe_path(
            path,
            format!("mode {mode:04o} is writable by others"),
        ));
    }
    if mode & 0o100 == 0 {
        return Err(Error::unsafe_path(path, "not executable"));
    }
    Ok(())
}

impl Dir {
    /// Opens a directory that only needs the ancestor rules (root owned, not writable by
    /// others), such as /etc/twostep holding a world-readable config.
    pub fn open_ancestors(path: &Path) -> Result<Option<Dir>, Error> {
        let names = normal_components(path)?;
        if let Some(dir) = Dir::open_resolved(&names, None)? {
            return Ok(Some(dir));
        }
        let mut dir = Dir::open_root()?;
        for name in names {
            match dir.open_subdir(name, None)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }
}

fn normal_components(path: &Path) -> Result<Vec<&OsStr>, Error> {
    if !path.is_absolute() {
        return Err(Error::unsafe_path(path, "not an absolute path"));
    }
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => names.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::unsafe_path(path, "'..' is not allowed in the path"));
            }
        }
    }
    Ok(names)
}

fn fstat_at(fd: &impl AsFd, path: &Path) -> Result<FileStat, Error> {
    fstat(fd).map_err(|e| Error::io(path, "stat", e))
}

fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// `access: None` is the rule for ancestors of the directory we want.
fn check_dir(path: &Path, stat: &FileStat, access: Option<Access>) -> Result<(), Error> {
    if file_type(stat) != SFlag::S_IFDIR {
        return Err(Error::unsafe_path(path, "not a directory"));
    }
    if stat.st_uid != 0 {
        return Err(Error::unsafe_path(
            path,
            format!("owned by uid {}, must be owned by root", stat.st_uid),
        ));
    }
    let mode = stat.st_mode & 0o7777;
    let ok = match access {
        None => mode & 0o022 == 0 || mode & 0o1000 != 0,
        Some(Access::Readable) => mode & 0o022 == 0,
        Some(Access::Private) => mode & 0o077 == 0,
    };
    if !ok {
        let want = match access {
            None | Some(Access::Readable) => "not writable by group or others",
            Some(Access::Private) => "mode 0700",
        };
        return Err(Error::unsafe_path(
            path,
            format!("directory mode {mode:04o}, must be {want}"),
        ));
    }
    Ok(())
}

/// `replaced`: the file was unlinked after we opened it (0 links is then expected).
fn check_file(path: &Path, stat: &FileStat, access: Access, replaced: bool) -> Result<(), Error> {
    if file_type(stat) != SFlag::S_IFREG {
        return Err(Error::unsafe_path(path, "not a regular file"));
    }
    if stat.st_uid != 0 {
        return Err(Error::unsafe_path(
            path,
            format!("owned by uid {}, must be owned by root", stat.st_uid),
        ));
    }
    if stat.st_nlink != 1 && !(replaced && stat.st_nlink == 0) {
        return Err(Error::unsafe_path(
            path,
            format!("has {} hard links, must have exactly one", stat.st_nlink),
        ));
    }
    let mode = stat.st_mode & 0o7777;
    let (bad, want) = match access {
        Access::Readable => (mode & 0o7022, "not writable by group or others"),
        Access::Private => (mode & 0o7077, "mode 0600"),
    };
    if bad != 0 {
        return Err(Error::unsafe_path(
            path,
            format!("mode {mode:04o}, must be {want}"),
        ));
    }
    Ok(())
}

/// Reads `file` whole, refusing more than `max` bytes. `size` is its size when it was checked
/// (`st_size` of the fstat the checks used): the buffer holds that plus one byte, so a file
/// still of that size takes one `read`, which returns `size` bytes without filling the buffer:
/// a regular file's read is short only at its end, so no second `read` is needed to see the
/// end. Any other answer (the file grew or shrank since, or a short read before `size`) reads
/// on to end of file, as before: the end is then a `read` of 0 bytes.
fn read_limited(
    file: &File,
    path: &Path,
    max: u64,
    size: i64,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    // Reading one byte past the limit tells "exactly max" from "too large" without trusting
    // st_size, which a file being rewritten could change under us.
    let expected = u64::try_from(size).unwrap_or(0).min(max + 1);
    let mut buf = Zeroizing::new(vec![0u8; usize::try_from(expected + 1).unwrap_or(4096)]);
    let mut filled = 0;
    let mut reader = file;
    loop {
        if filled == buf.len() {
            if filled as u64 > max {
                return Err(Error::unsafe_path(
                    path,
                    format!("larger than the {max} byte limit"),
                ));
            }
            // Grow by hand: a reallocating Vec would leave unwiped copies behind.
            let mut bigger = Zeroizing::new(vec![0u8; (filled * 2).max(4096)]);
            bigger[..filled].copy_from_slice(&buf[..filled]);
            buf = bigger;
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled as u64 == expected && filled < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                return Err(Error::io(path, "read", errno));
            }
        }
    }
    if filled as u64 > max {
        return Err(Error::unsafe_path(
            path,
            format!("larger than the {max} byte limit"),
        ));
    }
    buf.truncate(filled);
    Ok(buf)
}

fn write_synced(mut file: File, path: &Path, contents: &[u8]) -> Result<(), Error> {
    let to_errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    file.write_all(contents)
        .map_err(|e| Error::io(path, "write", to_errno(e)))?;
    // fdatasync: the data and the size are what a reader needs; timestamps can wait.
    file.sync_data()
        .map_err(|e| Error::io(path, "sync", to_errno(e)))
}

fn temp_name(name: &OsStr) -> std::ffi::OsString {
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    tmp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_relative_and_dotdot() {
        assert!(normal_components(Path::new("var/lib")).is_err());
        assert!(normal_components(Path::new("/var/../etc")).is_err());
        assert_eq!(
            normal_components(Path::new("/var/./lib/")).unwrap(),
            vec![OsStr::new("var"), OsStr::new("lib")]
        );
    }

    /// `read_limited` with a size from an fstat that may be stale: what it returns is always
    /// the whole file, whatever the hint; the limit holds.
    #[test]
    fn files_are_read_whole_whatever_size_was_seen() {
        let path = std::env::temp_dir().join(format!("twostep-read-{}", std::process::id()));
        for len in [0usize, 1, 75, 4095, 4096, 4097, 10_000] {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            std::fs::write(&path, &text).unwrap();
            let file = File::open(&path).unwrap();
            for hint in [0, 1, len / 2, len, len + 1, 2 * len + 3, 1 << 40] {
                let read = read_limited(&file, &path, 10_000, hint as i64).unwrap();
                assert_eq!(&read[..], &text[..], "len {len}, hint {hint}");
                // Back to the start for the next reading.
                std::io::Seek::rewind(&mut &file).unwrap();
                let err = read_limited(&file, &path, 74, hint as i64);
                assert_eq!(err.is_err(), len > 74, "len {len}, hint {hint}");
                std::io::Seek::rewind(&mut &file).unwrap();
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// The `openat2` fast path opens what the walk opens and refuses what it refuses: a
    /// symlink on the path (left to the walk, which says why), a directory below one that
    /// others may write, a directory of the wrong mode. Needs root (the directories must be
    /// root's); skipped otherwise.
    #[test]
    fn resolved_opens_agree_with_the_walk() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // Not under /tmp: a sticky ancestor sends the fast path to the walk (checked below).
        let run = Path::new("/run");
        match lstat(run) {
            Ok(st) if st.st_uid == 0 && st.st_mode & 0o7022 == 0 => {}
            _ => return,
        }
        let base = run.join(format!("twostep-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mkdir = |p: &Path, mode: u32| {
            std::fs::create_dir(p).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        mkdir(&base, 0o755);
        mkdir(&base.join("ok"), 0o700);
        mkdir(&base.join("open"), 0o755);
        mkdir(&base.join("wide"), 0o777);
        mkdir(&base.join("wide/inner"), 0o700);
        std::os::unix::fs::symlink(base.join("ok"), base.join("link")).unwrap();
        let resolved = |p: &Path, access| {
            Dir::open_resolved(&normal_components(p).unwrap(), access).map(|d| d.is_some())
        };
        let ok = base.join("ok");
        assert!(resolved(&ok, Some(Access::Private)).unwrap());
        assert_eq!(Dir::open(&ok, Access::Private).unwrap().unwrap().path(), ok);
        assert!(resolved(&base.join("open"), None).unwrap());
        assert!(resolved(&base.join("open"), Some(Access::Private)).is_err());
        assert!(Dir::open(&base.join("open"), Access::Private).is_err());
        assert!(!resolved(&base.join("link"), Some(Access::Private)).unwrap());
        assert!(Dir::open(&base.join("link"), Access::Private).is_err());
        assert!(!resolved(&base.join("link/x"), None).unwrap());
        assert!(resolved(&base.join("wide/inner"), Some(Access::Private)).is_err());
        assert!(Dir::open(&base.join("wide/inner"), Access::Private).is_err());
        assert!(!resolved(&base.join("missing"), None).unwrap());
        assert!(
            Dir::open(&base.join("missing"), Access::Private)
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(&base).unwrap();

        let sticky = std::env::temp_dir().join(format!("twostep-sticky-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sticky);
        mkdir(&sticky, 0o1777);
        mkdir(&sticky.join("ok"), 0o700);
        assert!(!resolved(&sticky.join("ok"), Some(Access::Private)).unwrap());
        // A sticky directory under a root-only one (/tmp under /) is no reason to walk.
        let plain = std::env::temp_dir().join(format!("twostep-plain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&plain);
        mkdir(&plain, 0o755);
        assert!(resolved(&plain, Some(Access::Readable)).unwrap());
        std::fs::remove_dir_all(&plain).unwrap();
        assert!(
            Dir::open(&sticky.join("ok"), Access::Private)
                .unwrap()
                .is_some()
        );
        std::fs::remove_dir_all(&sticky).unwrap();
    }

    #[test]
    fn temp_names_are_hidden() {
        assert_eq!(temp_name(OsStr::new("alice.toml")), ".alice.toml.tmp");
    }
}
