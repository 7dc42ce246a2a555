//! Fleet mode over TLS against a PostgreSQL server with a real certificate: a test CA and a
//! server certificate for `localhost` (a DNS name only, no IP address) made with the `openssl`
//! command, the server started with `ssl = on` and a `pg_hba.conf` that allows TCP through
//! TLS only (tests/src/postgres.rs, `Postgres::start_tls`). Checked through the CLI (`fleet
//! init`, `fleet status`) and logins through `twostep serve-store` and the real libpam.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use twostep_tests::fleet_host::{FleetHost, enroll_locally};
use twostep_tests::oath::totp;
use twostep_tests::postgres::Postgres;
use twostep_tests::{TestEnv, run};

const USER: &str = "daemon";
const SECRET: &str = "N5SXGZLJMFZWC3DBNZSGK4TTMVZHI2LF";
const T: i64 = 1_800_000_015;

/// The certificates of one test, in a directory of their own.
struct Certs {
    /// Keeps the directory (and removes it on drop).
    _env: TestEnv,
    dir: PathBuf,
}

impl Certs {
    /// A CA, a server certificate it signed for `localhost` (subjectAltName DNS:localhost
    /// only: so `host=127.0.0.1` is a name the certificate does not hold), and a second,
    /// unrelated CA.
    fn make(name: &str) -> Certs {
        let env = TestEnv::new(&format!("{name}_certs"));
        let dir = env.dir().join("certs");
        std::fs::create_dir(&dir).expect("create the certificate directory");
        let certs = Certs { _env: env, dir };
        certs.ca("ca", "twostep test CA");
        certs.ca("other-ca", "twostep other test CA");
        std::fs::write(
            certs.path("server.ext"),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost\n",
        )
        .expect("write the extensions");
        certs.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        certs.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        // The certificate holds what the tests rely on: the name, and no IP address.
        let text = certs.openssl(&["x509", "-in", "server.crt", "-noout", "-text"]);
        assert!(text.contains("DNS:localhost"), "{text}");
        assert!(!text.contains("IP Address"), "{text}");
        certs
    }

    fn ca(&self, name: &str, cn: &str) {
        std::fs::write(
            self.path(&format!("{name}.cnf")),
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ext\n\
                 [dn]\nCN = {cn}\n\
                 [ext]\nbasicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign\n\
                 subjectKeyIdentifier = hash\n"
            ),
        )
        .expect("write the CA config");
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-config",
            &format!("{name}.cnf"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    fn openssl(&self, args: &[&str]) -> String {
        let out = run::run(
            Command::new("openssl").args(args).current_dir(&self.dir),
            run::TIMEOUT,
        );
        assert!(
            out.status.success(),
            "openssl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Copies a CA certificate into the host's directory (root 0644, as an admin installs it),
    /// returning its path.
    fn install_ca(&self, name: &str, host: &FleetHost) -> PathBuf {
        let dest = host.env.dir().join(format!("{name}.pem"));
        std::fs::copy(self.path(&format!("{name}.crt")), &dest).expect("copy the CA");
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        dest
    }

    fn server(&self, name: &str) -> Postgres {
        Postgres::start_tls(name, &self.path("server.crt"), &self.path("server.key"))
    }
}

/// `[store]` lines: the URL on `host` (a name or an address), `sslmode` and `ca_file`.
fn store(db: &Postgres, host: &str, sslmode: &str, ca_file: &Path) -> String {
    format!(
        "url = \"host={host} port={} user=twostep dbname=postgres\"\nsslmode = \"{sslmode}\"\n\
         ca_file = \"{}\"\nhost_id = \"tls-host\"\n",
        db.port(),
        ca_file.display()
    )
}

/// What the CLI prints when the TLS handshake fails. It does not say why (db.rs's `connect`
/// drops the error's cause); the server's log does (`since`).
const HANDSHAKE_FAILED: &str =
    "cannot connect to the fleet database: error performing TLS handshake";

/// The server's log lines written after it was `before` bytes long.
fn since(db: &Postgres, before: usize) -> String {
    db.log().get(before..).unwrap_or_default().to_string()
}

fn chown(path: &Path, uid: libc::uid_t) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: chown gets a NUL-terminated path; no memory is shared.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, 0) }, 0, "chown");
}

#[test]
fn tls_verify_full_with_the_right_ca_works_for_the_cli_and_logins() {
    let certs = Certs::make("tls_ok");
    let db = certs.server("tls_ok");
    let mut host = FleetHost::new("tls_ok", "");
    let ca = certs.install_ca("ca", &host);
    host.set_store(&store(&db, "localhost", "verify-full", &ca));

    let init = host.cli_ok(&["fleet", "init"]);
    assert!(init.contains("schema version 3: created"), "{init}");
    let codes = enroll_locally(&host.env, USER, SECRET);
    assert!(!codes.is_empty());
    let imported = host.cli_ok(&["fleet", "import"]);
    assert!(imported.contains("1 imported"), "{imported}");

    host.start_serve().expect("serve-store");
    let code = totp(SECRET, T);
    host.login(USER, &code, T).assert_result("PAM_SUCCESS");
    host.login(USER, &code, T + 5).assert_result("PAM_AUTH_ERR");
    // serve-store's pooled connection to the database is TLS (pg_stat_ssl of its backend).
    let ssl = db.psql(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'twostep-serve-store'",
    );
    assert!(
        !ssl.trim().is_empty() && ssl.lines().all(|l| l == "t"),
        "serve-store's sessions: {ssl:?}"
    );
    let status = host.cli_ok(&["fleet", "status"]);
    assert!(status.contains("1 users in the fleet database"), "{status}");
    assert!(status.contains("last written by tls-host"), "{status}");
    host.env.assert_logs_clean(&[SECRET]);
}

#[test]
fn tls_a_wrong_ca_or_a_name_the_certificate_lacks_fails_closed() {
    let certs = Certs::make("tls_bad");
    let db = certs.server("tls_bad");
    let mut host = FleetHost::new("tls_bad", "");
    let ca = certs.install_ca("ca", &host);
    let other_ca = certs.install_ca("other-ca", &host);
    // Set up through the right CA first, so that a failure below is the certificate check's.
    host.set_store(&store(&db, "localhost", "verify-full", &ca));
    host.cli_ok(&["fleet", "init"]);
    enroll_locally(&host.env, USER, SECRET);
    host.cli_ok(&["fleet", "import"]);

    // Another CA: the CLI fails at the handshake; the client rejected the certificate (its
    // alert is in the server's log).
    for sslmode in ["verify-full", "verify-ca"] {
        host.set_store(&store(&db, "localhost", sslmode, &other_ca));
        let before = db.log().len();
        let err = host.cli_err(&["fleet", "status"]);
        assert!(err.contains(HANDSHAKE_FAILED), "{sslmode}: {err}");
        let log = since(&db, before);
        assert!(
            log.contains("alert unknown ca"),
            "{sslmode}: server log: {log}"
        );
    }
    // serve-store starts (a database unreachable at start is logged), and logins fail closed.
    host.set_store(&store(&db, "localhost", "verify-full", &other_ca));
    host.start_serve()
        .expect("serve-store starts without its database");
    let code = totp(SECRET, T);
    let login = host.login(USER, &code, T);
    login.assert_refused();
    login.assert_logged(&["refusing login"]);
    host.stop_serve();
    let serve_err = host.serve_stderr();
    assert!(
        serve_err.contains("unreachable at start") && serve_err.contains("TLS handshake"),
        "serve-store's log: {serve_err}"
    );

    // The right CA, but the address instead of the name the certificate holds.
    host.set_store(&store(&db, "127.0.0.1", "verify-full", &ca));
    let before = db.log().len();
    let err = host.cli_err(&["fleet", "status"]);
    assert!(err.contains(HANDSHAKE_FAILED), "{err}");
    let log = since(&db, before);
    // Not "unknown ca" this time: the chain is good, the name is what the client rejected.
    assert!(log.contains("alert bad certificate"), "server log: {log}");
    // verify-ca does not check the name: the same address and CA connect, so the refusal
    // above is the name check's.
    host.set_store(&store(&db, "127.0.0.1", "verify-ca", &ca));
    host.cli_ok(&["fleet", "status"]);

    // And the code that was refused above was never used: it works with the right settings.
    host.set_store(&store(&db, "localhost", "verify-full", &ca));
    host.start_serve().expect("serve-store");
    host.login(USER, &code, T + 1).assert_result("PAM_SUCCESS");
    host.env.assert_logs_clean(&[SECRET]);
}

#[test]
fn tls_plain_text_to_a_hostssl_only_server_is_refused() {
    let certs = Certs::make("tls_plain");
    let db = certs.server("tls_plain");
    let host = FleetHost::new("tls_plain", "");
    let ca = certs.install_ca("ca", &host);
    host.set_store(&store(&db, "127.0.0.1", "disable", &ca));
    let before = db.log().len();
    let err = host.cli_err(&["fleet", "init"]);
    // The CLI says only "db error" (db.rs's `connect` drops the server's message); the server
    // says why.
    assert!(
        err.contains("cannot connect to the fleet database"),
        "{err}"
    );
    let log = since(&db, before);
    assert!(
        log.contains("pg_hba.conf rejects connection") && log.contains("no encryption"),
        "server log: {log}"
    );
    // The same server over TLS (require: encrypted, certificate not checked) lets it in.
    host.set_store(&store(&db, "127.0.0.1", "require", &ca));
    let init = host.cli_ok(&["fleet", "init"]);
    assert!(init.contains("schema version 3: created"), "{init}");
}

#[test]
fn tls_a_ca_file_not_roots_or_writable_by_others_is_refused() {
    let certs = Certs::make("tls_cafile");
    let db = certs.server("tls_cafile");
    let host = FleetHost::new("tls_cafile", "");
    let ca = certs.install_ca("ca", &host);
    host.set_store(&store(&db, "localhost", "verify-full", &ca));
    host.cli_ok(&["fleet", "init"]);

    // Owned by another user (nobody may replace the CA that decides whom we trust).
    chown(&ca, 65534);
    let err = host.cli_err(&["fleet", "status"]);
    assert!(
        err.contains("store.ca_file") && err.contains("must be owned by root"),
        "{err}"
    );
    chown(&ca, 0);
    // Writable by the group or others.
    for mode in [0o664, 0o646] {
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = host.cli_err(&["fleet", "status"]);
        assert!(err.contains("store.ca_file"), "mode {mode:o}: {err}");
    }
    // A missing one is an error too, not a fallback to the system's CAs.
    host.set_store(&store(
        &db,
        "localhost",
        "verify-full",
        &host.env.dir().join("missing.pem"),
    ));
    let err = host.cli_err(&["fleet", "status"]);
    assert!(
        err.contains("missing.pem") && err.contains("does not exist"),
        "{err}"
    );
    // Readable by everybody is fine: a CA certificate is public.
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    host.set_store(&store(&db, "localhost", "verify-full", &ca));
    host.cli_ok(&["fleet", "status"]);
}

#[test]
fn tls_the_ca_file_is_the_only_ca_trusted() {
    let certs = Certs::make("tls_only");
    let db = certs.server("tls_only");
    let host = FleetHost::new("tls_only", "");
    let other_ca = certs.install_ca("other-ca", &host);
    // The CA that signed the server's certificate is among the "system's" CAs (OpenSSL's
    // default store, here through SSL_CERT_FILE), but ca_file names another one: as libpq's
    // sslrootcert, ca_file is the one CA trusted, and the connection is refused.
    let system: [(std::ffi::OsString, std::ffi::OsString); 2] = [
        ("SSL_CERT_FILE".into(), certs.path("ca.crt").into()),
        ("SSL_CERT_DIR".into(), certs.path("no-such-dir").into()),
    ];
    for sslmode in ["verify-full", "verify-ca"] {
        host.set_store(&store(&db, "localhost", sslmode, &other_ca));
        let out = host.env.cli_with(&["fleet", "init"], &system);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{sslmode}: connected through the system's CA:\n{text}"
        );
        assert!(text.contains(HANDSHAKE_FAILED), "{sslmode}: {text}");
    }
    // Without ca_file, the system's CAs are the ones trusted: the same server connects.
    host.set_store(&format!(
        "url = \"host=localhost port={} user=twostep dbname=postgres\"\n\
         sslmode = \"verify-full\"\nhost_id = \"tls-host\"\n",
        db.port()
    ));
    let out = host.env.cli_with(&["fleet", "init"], &system);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_serve_store_socket_activated_as_its_unit_serves_logins() {
    let certs = Certs::make("tls_activated");
    let db = certs.server("tls_activated");
    let mut host = FleetHost::new("tls_activated", "");
    let ca = certs.install_ca("ca", &host);
    host.set_store(&store(&db, "localhost", "verify-full", &ca));
    host.cli_ok(&["fleet", "init"]);
    enroll_locally(&host.env, USER, SECRET);
    host.cli_ok(&["fleet", "import"]);
    // The socket comes from "systemd" (packaging/systemd/twostep-store.socket's way): had
    // serve-store bound [store] socket itself, it would have found it taken and exited.
    host.start_serve_socket_activated()
        .expect("serve-store with the passed socket");
    host.login(USER, &totp(SECRET, T), T)
        .assert_result("PAM_SUCCESS");
    host.login(USER, &totp(SECRET, T), T + 1)
        .assert_result("PAM_AUTH_ERR");
    let log = host.serve_stderr();
    assert!(
        log.contains("fleet store listening") && log.contains("systemd socket"),
        "{log}"
    );
    host.env.assert_logs_clean(&[SECRET]);
}
