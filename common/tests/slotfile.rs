#![allow(clippy::unwrap_used)]

//! The slot file on a real directory: alternating slots, torn writes at every byte, growth.
//! Needs root (the file must be root owned), like the store.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;

mod support;

use twostep_common::securefs::{Access, Dir};
use twostep_common::slotfile::{MIN_SLOT, SlotFile};

const NAME: &str = "alice.state";

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> (Scratch, Dir) {
    let dir = support::scratch_dir("slotfile");
    let opened = Dir::open(&dir, Access::Private).unwrap().unwrap();
    (Scratch(dir), opened)
}

fn open(dir: &Dir) -> SlotFile {
    SlotFile::open(dir, OsStr::new(NAME)).unwrap().unwrap()
}

#[test]
fn writes_alternate_slots_and_the_newest_wins() {
    let (_scratch, dir) = scratch();
    assert!(SlotFile::open(&dir, OsStr::new(NAME)).unwrap().is_none());
    SlotFile::create(&dir, OsStr::new(NAME), b"v1").unwrap();
    let path = dir.path().join(NAME);
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * MIN_SLOT as u64);
    let mut file = open(&dir);
    assert_eq!(&file.read().unwrap()[..], b"v1");
    for n in 2..10 {
        let text = format!("v{n}");
        file.write(&dir, OsStr::new(NAME), text.as_bytes(), n % 2 == 0)
            .unwrap();
        // A fresh reader (another process) sees it, and the inode stays the same.
        assert_eq!(&open(&dir).read().unwrap()[..], text.as_bytes());
    }
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"twostep-state v1 seq=0000000000000009"));
    assert!(bytes[MIN_SLOT..].starts_with(b"twostep-state v1 seq=0000000000000008"));
}

/// A write cut off after any number of bytes (a crash, a power cut) leaves the previous
/// payload readable; a write that completed is what is read.
#[test]
fn a_torn_write_at_any_byte_keeps_the_previous_state() {
    let (_scratch, dir) = scratch();
    SlotFile::create(&dir, OsStr::new(NAME), b"old state").unwrap();
    let mut file = open(&dir);
    file.read().unwrap();
    file.write(&dir, OsStr::new(NAME), b"middle state", false)
        .unwrap();
    let path = dir.path().join(NAME);
    let before = fs::read(&path).unwrap();
    // What the next write would put into slot 0 (the older one): written by a scratch copy.
    let mut probe = open(&dir);
    probe.read().unwrap();
    probe
        .write(&dir, OsStr::new(NAME), b"the new state, longer", false)
        .unwrap();
    let after = fs::read(&path).unwrap();
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(!changed.is_empty() && changed.iter().all(|&i| i < MIN_SLOT));
    let raw = fs::OpenOptions::new().write(true).open(&path).unwrap();
    for cut in 0..=*changed.last().unwrap() + 1 {
        raw.write_all_at(&before, 0).unwrap();
        raw.write_all_at(&after[..cut], 0).unwrap();
        let got = open(&dir).read().unwrap();
        let complete = changed.iter().all(|&i| i < cut);
        let want: &[u8] = if complete {
            b"the new state, longer"
        } else {
            b"middle state"
        };
        assert_eq!(&got[..], want, "cut after {cut} bytes");
    }
}

#[test]
fn both_slots_damaged_is_an_error_not_an_empty_state() {
    let (_scratch, dir) = scratch();
    SlotFile::create(&dir, OsStr::new(NAME), b"state").unwrap();
    let path = dir.path().join(NAME);
    let raw = fs::OpenOptions::new().write(true).open(&path).unwrap();
    raw.write_all_at(b"X", 30).unwrap();
    let err = open(&dir).read().unwrap_err().to_string();
    assert!(err.contains("no intact slot"), "{err}");
    // Sizes that are not two power-of-two slots are refused on open.
    raw.set_len(3 * MIN_SLOT as u64).unwrap();
    assert!(SlotFile::open(&dir, OsStr::new(NAME)).is_err());
}

#[test]
fn a_payload_larger_than_a_slot_grows_the_file() {
    let (_scratch, dir) = scratch();
    SlotFile::create(&dir, OsStr::new(NAME), b"small").unwrap();
    let mut file = open(&dir);
    file.read().unwrap();
    let big = vec![b'b'; 3 * MIN_SLOT];
    file.write(&dir, OsStr::new(NAME), &big, false).unwrap();
    let path = dir.path().join(NAME);
    assert_eq!(fs::metadata(&path).unwrap().len(), 8 * MIN_SLOT as u64);
    assert_eq!(&open(&dir).read().unwrap()[..], &big[..]);
    // The same handle goes on writing into the new file.
    file.write(&dir, OsStr::new(NAME), b"small again", false)
        .unwrap();
    assert_eq!(&open(&dir).read().unwrap()[..], b"small again");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
}
