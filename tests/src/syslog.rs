//! A syslog datagram listener: what the module logs, as the tests see it.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Prefix of the markers [`SyslogListener::sync`] sends itself; never stored as messages.
const SYNC_MARKER: &str = "\0twostep-tests-sync ";
/// How long the reader blocks before checking whether it should stop.
const POLL: Duration = Duration::from_millis(50);
/// How long `sync` waits for its marker.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// A Unix datagram socket bound at a path, read by a background thread that keeps every
/// datagram as a string (lossily decoded, trailing NULs and newlines removed). Dropping it
/// stops the thread and removes the socket file.
#[derive(Debug)]
pub struct SyslogListener {
    path: PathBuf,
    shared: Arc<Shared>,
    syncs_sent: AtomicU64,
    reader: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    messages: Vec<String>,
    /// Highest sync marker received.
    synced: u64,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SyslogListener {
    /// Binds a new socket at `path` (which must not exist) and starts reading it.
    pub fn bind(path: &Path) -> std::io::Result<SyslogListener> {
        let socket = UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(POLL))?;
        let shared = Arc::new(Shared::default());
        let reader = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || read_loop(&socket, &shared))
        };
        Ok(SyslogListener {
            path: path.to_path_buf(),
            shared,
            syncs_sent: AtomicU64::new(0),
            reader: Some(reader),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message received so far, after [`sync`](Self::sync).
    pub fn messages(&self) -> Vec<String> {
        self.sync();
        self.shared.lock().messages.clone()
    }

    /// Waits until the reader has stored every datagram sent before this call: sends itself a
    /// marker and waits for it (datagrams on one socket are received in order). Panics after
    /// ten seconds.
    pub fn sync(&self) {
        let n = self.syncs_sent.fetch_add(1, Ordering::SeqCst) + 1;
        UnixDatagram::unbound()
            .and_then(|s| s.send_to(format!("{SYNC_MARKER}{n}").as_bytes(), &self.path))
            .unwrap_or_else(|e| panic!("cannot write to {}: {e}", self.path.display()));
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, SYNC_TIMEOUT, |s| s.synced < n && !s.stop)
            .unwrap_or_else(|e| e.into_inner());
        assert!(
            state.synced >= n,
            "syslog listener at {} did not catch up",
            self.path.display()
        );
    }
}

impl Drop for SyslogListener {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_loop(socket: &UnixDatagram, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.lock().stop {
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let text = String::from_utf8_lossy(&buf[..len]);
        let mut state = shared.lock();
        match text.strip_prefix(SYNC_MARKER) {
            Some(n) => state.synced = state.synced.max(n.parse().unwrap_or(0)),
            None => state
                .messages
                .push(text.trim_end_matches(['\0', '\n']).to_string()),
        }
        shared.changed.notify_all();
    }
    shared.lock().stop = true;
    shared.changed.notify_all();
}

/// The first of `logs` that contains every one of `needles`; panics otherwise, showing
/// `context` (the attempt's output and log lines).
pub fn assert_logged<'a>(
    logs: &'a [String],
    needles: &[&str],
    context: &dyn std::fmt::Display,
) -> &'a str {
    logs.iter()
        .find(|line| needles.iter().all(|n| line.contains(n)))
        .unwrap_or_else(|| panic!("no log line contains all of {needles:?}\n{context}"))
}
