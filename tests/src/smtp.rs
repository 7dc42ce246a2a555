//! SMTP endpoints on 127.0.0.1 for the emailed-code tests: a real server that stores every
//! message, one that accepts connections and never answers, and a closed port.
//!
//! [`SmtpServer`] runs Debian's aiosmtpd (`python3-aiosmtpd`, an SMTP implementation
//! independent of the product's client) with a small handler written into the server's
//! directory: each message is saved as `mail/NNNNNN.eml` (the bytes of the DATA phase, CRLF line
//! ends) next to `mail/NNNNNN.envelope` (`MAIL FROM:` and `RCPT TO:` lines), numbered in arrival
//! order and renamed into place only once complete. The server binds port 0 itself and reports
//! the port, so there is no port race; it is killed by its pid on drop, and exits by itself
//! when the test process dies (it watches a pipe from this process).
//!
//! ```no_run
//! use std::time::Duration;
//! use twostep_tests::smtp::SmtpServer;
//!
//! let smtp = SmtpServer::start(std::path::Path::new("/tmp/some-test-dir/smtp"));
//! // ... configure [email] smtp_host = "127.0.0.1", smtp_port = smtp.port(), security = "none"
//! let mail = smtp.wait_for_messages(1, Duration::from_secs(10)).remove(0);
//! assert!(mail.code().is_some(), "{mail}");
//! ```

use std::fs::{DirBuilder, Permissions};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Debian's interpreter, which has `python3-aiosmtpd` (a `python3` earlier in PATH, e.g. from
/// pyenv, may not).
const PYTHON: &str = "/usr/bin/python3";
/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Environment variable naming the message directory `mail-code` reads.
pub const MAILDIR_ENV: &str = "TWOSTEP_TEST_MAILDIR";
/// How long `mail-code` waits for a first message.
pub const MAIL_CODE_WAIT: Duration = Duration::from_secs(10);

/// The aiosmtpd handler and main program; argument: the message directory. Prints
/// `listening on PORT` once the socket is bound.
const SERVER_PY: &str = r#"
import asyncio, os, sys, threading
from aiosmtpd.smtp import SMTP


class Store:
    """Saves each message as NNNNNN.eml plus NNNNNN.envelope, renamed into place when complete."""

    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    def _write(self, path, data):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(path + ".tmp", path)

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, "%06d" % self.count)
        lines = ["MAIL FROM: %s\n" % envelope.mail_from]
        lines += ["RCPT TO: %s\n" % rcpt for rcpt in envelope.rcpt_tos]
        self._write(base + ".envelope", "".join(lines).encode())
        self._write(base + ".eml", envelope.original_content)
        print("stored %06d from %s to %s" % (self.count, envelope.mail_from, envelope.rcpt_tos),
              file=sys.stderr, flush=True)
        return "250 OK stored as %06d" % self.count


def watch_parent():
    # stdin is a pipe from the test process: EOF means it is gone or dropped the server.
    sys.stdin.buffer.read()
    os._exit(0)


def main():
    handler = Store(sys.argv[1])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(handler, hostname="smtp.twostep-tests.invalid"), "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    threading.Thread(target=watch_parent, daemon=True).start()
    print("listening on %d" % port, flush=True)
    loop.run_forever()


main()
"#;

/// A real SMTP server on 127.0.0.1 (aiosmtpd) that stores every message it receives.
#[derive(Debug)]
pub struct SmtpServer {
    dir: PathBuf,
    port: u16,
    child: Child,
    /// Held open while the server should run; its EOF stops the server.
    stdin: Option<ChildStdin>,
}

impl SmtpServer {
    /// Starts a server storing messages under `dir/mail` (`dir` is created if needed, 0700);
    /// `dir/smtp.log` gets the server's stderr. Panics if it does not listen within 20 s.
    pub fn start(dir: &Path) -> SmtpServer {
        create_dir(dir);
        let maildir = dir.join("mail");
        create_dir(&maildir);
        let script = dir.join("smtp-server.py");
        std::fs::write(&script, SERVER_PY)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", script.display()));
        let log_path = dir.join("smtp.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .arg(&maildir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {PYTHON} (install python3-aiosmtpd, see .ci/run): {e}")
            });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        // Reads the server's stdout to its end, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // After startup nobody listens any more; keep draining.
                let _ = lines_tx.send(line);
            }
        });
        let mut server = SmtpServer {
            dir: dir.to_path_buf(),
            port: 0,
            child,
            stdin,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while server.port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line.strip_prefix("listening on ") {
                        server.port = port.trim().parse().expect("the server prints its port");
                    }
                }
                Err(_) => panic!(
                    "the SMTP server did not start within {START_TIMEOUT:?} (is python3-aiosmtpd \
                     installed? see .ci/run); its log:\n{}",
                    server.log()
                ),
            }
        }
        server
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory the messages are stored in (`NNNNNN.eml`, `NNNNNN.envelope`).
    pub fn maildir(&self) -> PathBuf {
        self.dir.join("mail")
    }

    /// The server's stderr so far (one `stored …` line per message, and any errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("smtp.log")).unwrap_or_default()
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Mail> {
        read_maildir(&self.maildir())
    }

    /// Waits until at least `n` messages arrived and returns all of them; panics after
    /// `timeout`.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages within {timeout:?}, got {}:\n{}\nserver log:\n{}",
                messages.len(),
                messages
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A program for `pam-drive --answer-exec` (see [`crate::Attempt::answer_exec`]) that
    /// prints the code of the newest message of this server: a script `dir/mail-code` running
    /// this package's `mail-code` binary with [`MAILDIR_ENV`] set.
    pub fn code_reader(&self) -> PathBuf {
        let binary = crate::paths::profile_dir().join("mail-code");
        assert!(
            binary.is_file(),
            "{} is missing: run `cargo build --workspace` first",
            binary.display()
        );
        let binary = std::path::absolute(&binary).unwrap_or(binary);
        let script = self.dir.join("mail-code");
        let text = format!(
            "#!/bin/sh\n{MAILDIR_ENV}={} exec {} \"$@\"\n",
            shell_quote(&self.maildir()),
            shell_quote(&binary)
        );
        std::fs::write(&script, text)
            .and_then(|()| std::fs::set_permissions(&script, Permissions::from_mode(0o700)))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", script.display()));
        script
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Child::kill sends SIGKILL to this child's own pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server on 127.0.0.1 that accepts connections and never sends a byte: an SMTP server
/// that hangs before its greeting. A thread holds the sockets until the value is dropped.
#[derive(Debug)]
pub struct HangingSmtp {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HangingSmtp {
    /// Binds a free port on 127.0.0.1 and starts accepting.
    pub fn start() -> HangingSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, accepted) = (Arc::clone(&stop), Arc::clone(&accepted));
            std::thread::spawn(move || {
                let mut held: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            held.push(stream);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        HangingSmtp {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HangingSmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (connections are refused): binds a free port and
/// closes it again.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// One stored message, parsed.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// The `To:` header (decoded).
    pub to: String,
    /// The `From:` header (decoded).
    pub from: String,
    /// The `Subject:` header (decoded).
    pub subject: String,
    /// The text body, with its transfer encoding (quoted-printable, base64) undone and CRLF
    /// turned into LF; for a multipart message, its first `text/plain` part.
    pub body: String,
    /// Every header as (name, decoded value), in order.
    pub headers: Vec<(String, String)>,
    /// The SMTP envelope sender (`MAIL FROM`).
    pub envelope_from: String,
    /// The SMTP envelope recipients (`RCPT TO`).
    pub envelope_to: Vec<String>,
    /// The message as received.
    pub raw: String,
    /// The file it was stored in.
    pub file: PathBuf,
}

impl Mail {
    /// Parses an RFC 5322 message (headers, blank line, body).
    pub fn parse(raw: &[u8]) -> Mail {
        let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        let entity = Entity::parse(&text);
        let header = |name: &str| entity.header(name).unwrap_or_default();
        Mail {
            to: header("to"),
            from: header("from"),
            subject: header("subject"),
            body: entity.text_body(),
            headers: entity.headers.clone(),
            raw: text,
            ..Mail::default()
        }
    }

    /// The first header of this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The code: the first body line that holds only 4 to 10 digits (surrounding spaces
    /// ignored).
    pub fn code(&self) -> Option<String> {
        code_in(&self.body)
    }
}

impl std::fmt::Display for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "--- {} (MAIL FROM {:?}, RCPT TO {:?})",
            self.file.display(),
            self.envelope_from,
            self.envelope_to
        )?;
        write!(f, "{}", self.raw)
    }
}

/// The first line of `body` that holds only 4 to 10 ASCII digits, trimmed.
pub fn code_in(body: &str) -> Option<String> {
    body.lines()
        .map(str::trim)
        .find(|line| (4..=10).contains(&line.len()) && line.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

/// Every `*.eml` in `dir` with its envelope, in file-name (arrival) order.
pub fn read_maildir(dir: &Path) -> Vec<Mail> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let raw = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let mut mail = Mail::parse(&raw);
            let envelope =
                std::fs::read_to_string(file.with_extension("envelope")).unwrap_or_default();
            for line in envelope.lines() {
                if let Some(from) = line.strip_prefix("MAIL FROM: ") {
                    mail.envelope_from = from.to_string();
                } else if let Some(to) = line.strip_prefix("RCPT TO: ") {
                    mail.envelope_to.push(to.to_string());
                }
            }
            mail.file = file;
            mail
        })
        .collect()
}

/// A MIME entity: unfolded headers and the raw body (LF line ends).
#[derive(Debug)]
struct Entity {
    headers: Vec<(String, String)>,
    body: String,
}

impl Entity {
    fn parse(text: &str) -> Entity {
        let (head, body) = match text.split_once("\n\n") {
            Some((head, body)) => (head, body),
            None => (text, ""),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        for (_, value) in &mut headers {
            *value = decode_words(value);
        }
        Entity {
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// A parameter of a structured header, e.g. `boundary` of Content-Type.
    fn param(&self, header: &str, name: &str) -> Option<String> {
        let value = self.header(header)?;
        value.split(';').skip(1).find_map(|part| {
            let (key, val) = part.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| val.trim().trim_matches('"').to_string())
        })
    }

    fn content_type(&self) -> String {
        self.header("content-type")
            .and_then(|v| v.split(';').next().map(|t| t.trim().to_ascii_lowercase()))
            .unwrap_or_else(|| "text/plain".into())
    }

    /// This entity's text: its decoded body, or for multipart the first text/plain part's.
    fn text_body(&self) -> String {
        if self.content_type().starts_with("multipart/") {
            let Some(boundary) = self.param("content-type", "boundary") else {
                return self.body.clone();
            };
            let delimiter = format!("--{boundary}");
            let parts = self
                .body
                .split(&delimiter)
                .skip(1)
                .take_while(|part| !part.starts_with("--"))
                .map(|part| Entity::parse(part.strip_prefix('\n').unwrap_or(part)));
            let mut fallback = None;
            for part in parts {
                if part.content_type() == "text/plain" {
                    return part.text_body();
                }
                fallback.get_or_insert(part);
            }
            return fallback.map(|part| part.text_body()).unwrap_or_default();
        }
        let encoding = self
            .header("content-transfer-encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "quoted-printable" => decode_qp(&self.body),
            "base64" => decode_base64(&self.body),
            _ => self.body.as_bytes().to_vec(),
        };
        String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
    }
}

/// Decodes quoted-printable (soft line breaks `=\n`, `=XX` escapes).
pub fn decode_qp(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Decodes base64 (standard alphabet), ignoring whitespace and anything after padding.
pub fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`, UTF-8 assumed) in a header value;
/// whitespace between adjacent encoded words is dropped.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        let decoded = encoded_word(candidate);
        match decoded {
            Some((text, len)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &candidate[len..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `text`: its decoded text and its length.
fn encoded_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let mut fields = inner.splitn(3, '?');
    let (_charset, encoding, rest) = (fields.next()?, fields.next()?, fields.next()?);
    let end = rest.find("?=")?;
    let payload = &rest[..end];
    let bytes = match encoding {
        "B" | "b" => decode_base64(payload),
        "Q" | "q" => decode_qp(&payload.replace('_', " ")),
        _ => return None,
    };
    let len = 2 + inner.len() - rest.len() + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), len))
}

fn create_dir(dir: &Path) {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
}

/// A path as one single-quoted shell word.
fn shell_quote(path: &Path) -> String {
    let text = path.to_str().expect("test paths are UTF-8");
    assert!(!text.contains('\''), "path {text:?} cannot be quoted");
    format!("'{text}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_printable_and_base64_bodies() {
        let qp = "From: nas@example.com\r\nTo: a@example.com\r\nSubject: =?utf-8?q?Your_code_=E2=80=A2?=\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n\r\nHello=\r\n world =E2=80=A2\r\n    123456\r\n";
        let mail = Mail::parse(qp.as_bytes());
        assert_eq!(mail.subject, "Your code •");
        assert_eq!(mail.to, "a@example.com");
        assert_eq!(mail.body, "Hello world •\n    123456\n");
        assert_eq!(mail.code().as_deref(), Some("123456"));

        let b64 = "Subject: =?UTF-8?B?WW91cg==?= =?UTF-8?B?IGNvZGU=?=\r\n\
                   Content-Transfer-Encoding: base64\r\n\r\nSGksCiAgICAwMDEyMzQKYnllCg==\r\n";
        let mail = Mail::parse(b64.as_bytes());
        assert_eq!(mail.subject, "Your code");
        assert_eq!(mail.body, "Hi,\n    001234\nbye\n");
        assert_eq!(mail.code().as_deref(), Some("001234"));
    }

    #[test]
    fn takes_the_text_part_of_multipart_and_unfolds_headers() {
        let raw = "Subject: a\r\n  folded\r\nContent-Type: multipart/alternative; boundary=\"XY\"\r\n\r\n\
                   --XY\r\nContent-Type: text/html\r\n\r\n<p>1</p>\r\n--XY\r\n\
                   Content-Type: text/plain; charset=utf-8\r\n\r\n  987654\r\n--XY--\r\n";
        let mail = Mail::parse(raw.as_bytes());
        assert_eq!(mail.subject, "a folded");
        assert_eq!(mail.code().as_deref(), Some("987654"));
    }

    #[test]
    fn only_lines_of_digits_are_codes() {
        assert_eq!(code_in("at 2026-11-25 14:50 UTC\n  42\n"), None);
        assert_eq!(code_in("x\n\t 12345678 \n"), Some("12345678".into()));
    }
}
