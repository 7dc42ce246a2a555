//! A small file rewritten in place, crash-safe without rename or fsync: two slots, each a
//! header with a sequence number and a checksum, then the payload. A write goes to the older
//! slot, so the newer one is never touched: a torn write (a crash, a power cut, a reader racing
//! the writer) leaves a slot whose checksum fails, and readers take the other, previous one.
//!
//! Why not temp file + rename, as for records: on ext4 a rename over an existing file starts
//! the new file's writeback and frees the old inode at once (`auto_da_alloc`), about 100 µs on
//! the test machine's disk against 0.5 µs for an in-place `pwrite`, and a login writes its
//! state every time. Used for the per-user login state (see `store.rs`).
//!
//! Layout: the file is two slots of equal size (a power of two, at least [`MIN_SLOT`]). A slot
//! starts with the 72-byte text line
//! `twostep-state v1 seq=<16 hex> len=<8 hex> sum=<16 hex>\n`, then `len` payload bytes; the
//! rest of the slot is ignored. `sum` is FNV-1a (64 bit) over the line up to ` sum=` and the
//! payload: it detects torn writes, not tampering (only root can write the file).

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use nix::errno::Errno;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::securefs::{Access, Dir};

pub const MIN_SLOT: usize = 2048;
/// Larger files are refused. The login state is a few hundred bytes with the default lockout
/// limits; at the largest limits the config allows (10,000 failures per user), about 400 KB
/// (tested in `record.rs`), which needs 512 KiB slots.
pub const MAX_FILE: usize = 2 * 1024 * 1024;
const MAGIC: &[u8] = b"twostep-state v1 ";
const HEADER_LEN: usize = 72;
/// The part of the header the checksum covers (everything before ` sum=`).
const SUMMED_HEADER: usize = 50;

/// An open slot file, with which slot holds the newest payload once it has been read.
#[derive(Debug)]
pub struct SlotFile {
    file: File,
    path: PathBuf,
    /// Device and inode, to tell whether the name still refers to this file.
    id: (u64, u64),
    /// False when opened read-only because the file system is.
    writable: bool,
    slot_size: usize,
    newest: Option<(usize, u64)>,
}

impl SlotFile {
    /// Opens `name` in `dir` for reading and writing; `Ok(None)` when it does not exist.
    pub fn open(dir: &Dir, name: &OsStr) -> Result<Option<SlotFile>, Error> {
        let path = dir.path().join(name);
        let opened = match dir.open_file_rw(name, Access::Private) {
            // Readers (`twostep status`, the look before the prompt) work on a read-only
            // state directory; a write then fails with EROFS, as any write there would.
            Err(Error::Io {
                errno: Errno::EROFS,
                ..
            }) => dir
                .open_file_stat(name, Access::Private)?
                .map(|o| (o, false)),
            other => other?.map(|o| (o, true)),
        };
        let Some(((file, stat), writable)) = opened else {
            return Ok(None);
        };
        let size = usize::try_from(stat.st_size).unwrap_or(usize::MAX);
        let slot_size = size / 2;
        if size > MAX_FILE || slot_size < MIN_SLOT || !slot_size.is_power_of_two() {
            return Err(Error::Corrupt {
                path,
                message: format!("size {size} is not that of a slot file"),
            });
        }
        Ok(Some(SlotFile {
            file,
            path,
            id: (stat.st_dev, stat.st_ino),
            writable,
            slot_size,
            newest: None,
        }))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether `name` in `dir` is still this file (not replaced since it was opened). The open
    /// file keeps its inode number from being reused, so equal numbers mean the same file.
    pub fn is_at(&self, dir: &Dir, name: &OsStr) -> Result<bool, Error> {
        Ok(dir
            .stat_file(name, Access::Private)?
            .is_some_and(|stat| (stat.st_dev, stat.st_ino) == self.id))
    }

    /// Creates (or replaces) `name` holding `payload`, synced, by temp file and rename.
    pub fn create(dir: &Dir, name: &OsStr, payload: &[u8]) -> Result<(), Error> {
        let image = new_image(payload, 1)?;
        dir.replace_file(name, &image)
    }

    /// The newest intact payload. No intact slot is an error: a single torn write can only
    /// damage one of them.
    pub fn read(&mut self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut image = Zeroizing::new(vec![0u8; 2 * self.slot_size]);
        let mut filled = 0;
        while filled < image.len() {
            match self.file.read_at(&mut image[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&self.path, "read", e)),
            }
        }
        let [first, second] =
            [0, 1].map(|i| parse_slot(&image[i * self.slot_size..(i + 1) * self.slot_size]));
        let (newest, (header, payload)) = match (first, second) {
            (Some(a), Some(b)) if b.0.seq > a.0.seq => (1, b),
            (Some(a), _) => (0, a),
            (None, Some(b)) => (1, b),
            (None, None) => {
                return Err(Error::Corrupt {
                    path: self.path.clone(),
                    message: "no intact slot (damaged; `twostep unlock USER` writes a fresh one)"
                        .into(),
                });
            }
        };
        self.newest = Some((newest, header.seq));
        Ok(Zeroizing::new(payload.to_vec()))
    }

    /// Writes `payload` over the older slot (after [`SlotFile::read`]); `sync` adds an
    /// fdatasync. A payload too large for a slot makes a new file with larger slots, by
    /// [`Dir::replace_file`] (synced), after which this handle points at it.
    pub fn write(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        payload: &[u8],
        sync: bool,
    ) -> Result<(), Error> {
        let (newest, seq) = self
            .newest
            .ok_or_else(|| Error::Bug("slot file written before it was read".into()))?;
        if !self.writable {
            return Err(Error::io(&self.path, "write", Errno::EROFS));
        }
        let seq = seq + 1;
        if HEADER_LEN + payload.len() > self.slot_size {
            dir.replace_file(name, &new_image(payload, seq)?)?;
            *self = SlotFile::open(dir, name)?.ok_or_else(|| Error::Corrupt {
                path: self.path.clone(),
                message: "vanished after it was replaced".into(),
            })?;
            self.newest = Some((0, seq));
            return Ok(());
        }
        let target = 1 - newest;
        let slot = slot_bytes(payload, seq);
        let offset = (target * self.slot_size) as u64;
        self.file
            .write_all_at(&slot, offset)
            .map_err(|e| io_error(&self.path, "write", e))?;
        if sync {
            self.file
                .sync_data()
                .map_err(|e| io_error(&self.path, "sync", e))?;
        }
        self.newest = Some((target, seq));
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    seq: u64,
    len: usize,
}

/// A whole file: `payload` in slot 0 with `seq`, slot 1 blank (never intact).
fn new_image(payload: &[u8], seq: u64) -> Result<Zeroizing<Vec<u8>>, Error> {
    let slot_size = (HEADER_LEN + payload.len())
        .next_power_of_two()
        .max(MIN_SLOT);
    if 2 * slot_size > MAX_FILE {
        return Err(Error::Bug(format!(
            "login state of {} bytes is larger than a slot file may be",
            payload.len()
        )));
    }
    let mut image = Zeroizing::new(vec![0u8; 2 * slot_size]);
    let slot = slot_bytes(payload, seq);
    image[..slot.len()].copy_from_slice(&slot);
    Ok(image)
}

fn slot_bytes(payload: &[u8], seq: u64) -> Zeroizing<Vec<u8>> {
    let mut slot = Zeroizing::new(Vec::with_capacity(HEADER_LEN + payload.len()));
    slot.extend_from_slice(MAGIC);
    slot.extend_from_slice(format!("seq={seq:016x} len={:08x}", payload.len()).as_bytes());
    let sum = checksum(&slot[..SUMMED_HEADER], payload);
    slot.extend_from_slice(format!(" sum={sum:016x}\n").as_bytes());
    debug_assert_eq!(slot.len(), HEADER_LEN);
    slot.extend_from_slice(payload);
    slot
}

/// The header and payload of an intact slot.
fn parse_slot(slot: &[u8]) -> Option<(Header, &[u8])> {
    let line = slot.get(..HEADER_LEN)?;
    let text = std::str::from_utf8(line).ok()?;
    let fields = text.strip_prefix(std::str::from_utf8(MAGIC).ok()?)?;
    let fields = fields.strip_suffix('\n')?;
    let mut parts = fields.split(' ');
    let seq = hex_field(parts.next()?, "seq=", 16)?;
    let len = usize::try_from(hex_field(parts.next()?, "len=", 8)?).ok()?;
    let sum = hex_field(parts.next()?, "sum=", 16)?;
    if parts.next().is_some() {
        return None;
    }
    let payload = slot.get(HEADER_LEN..HEADER_LEN.checked_add(len)?)?;
    (checksum(&line[..SUMMED_HEADER], payload) == sum).then_some((Header { seq, len }, payload))
}

fn hex_field(field: &str, key: &str, digits: usize) -> Option<u64> {
    let hex = field.strip_prefix(key)?;
    if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// FNV-1a, 64 bit.
fn checksum(header: &[u8], payload: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in header.iter().chain(payload) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn io_error(path: &std::path::Path, action: &'static str, e: std::io::Error) -> Error {
    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    Error::io(path, action, errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_refuse_damage() {
        let slot = slot_bytes(b"a = 1\n", 7);
        assert_eq!(slot.len(), HEADER_LEN + 6);
        assert!(slot.starts_with(b"twostep-state v1 seq=0000000000000007 len=00000006 sum="));
        let (header, payload) = parse_slot(&slot).unwrap();
        assert_eq!((header.seq, header.len, payload), (7, 6, &b"a = 1\n"[..]));
        for cut in 0..slot.len() {
            assert!(parse_slot(&slot[..cut]).is_none(), "cut at {cut}");
            let mut flipped = slot.clone();
            flipped[cut] ^= 0x01;
            assert!(parse_slot(&flipped).is_none(), "bit flipped at {cut}");
        }
        assert!(parse_slot(&[0u8; MIN_SLOT]).is_none());
    }

    #[test]
    fn images_grow_in_powers_of_two() {
        assert_eq!(new_image(b"", 1).unwrap().len(), 2 * MIN_SLOT);
        let big = vec![b'x'; MIN_SLOT];
        assert_eq!(new_image(&big, 1).unwrap().len(), 4 * MIN_SLOT);
        assert!(new_image(&vec![b'x'; MAX_FILE / 2], 1).is_err());
    }
}
