//! The self-service's start-up (issue 15: "starts and serves in well under 50 ms"): from
//! spawning `twostep serve-self` on a fresh socket, as socket activation would at the first
//! connection, to the answer of its first `status` request (config read, peer credentials, the
//! caller's record looked up), measured `n` times, each with a new process.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Times of start to first answer; panics if the service never answers right.
pub fn measure(cli: &Path, config: &Path, dir: &Path, n: usize) -> Vec<Duration> {
    let socket_dir = dir.join("self");
    crate::setup::create_dir(&socket_dir);
    std::fs::set_permissions(
        &socket_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the socket directory");
    let socket = socket_dir.join("self.sock");
    (0..n).map(|_| once(cli, config, &socket)).collect()
}

fn once(cli: &Path, config: &Path, socket: &Path) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(cli)
        .arg("--config")
        .arg(config)
        .args(["serve-self", "--socket"])
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start twostep serve-self");
    let deadline = start + Duration::from_secs(10);
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => panic!("serve-self did not listen within 10 s: {e}"),
        }
    };
    (&stream)
        .write_all(b"{\"op\":\"status\"}\n")
        .expect("send the request");
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .expect("read the answer");
    let took = start.elapsed();
    assert!(
        answer.starts_with("{\"ok\""),
        "serve-self answered {answer:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    took
}
