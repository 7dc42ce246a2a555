//! The Cockpit page's part for every user (cockpit/self.js, docs/self-service.md) in a real
//! Cockpit, as a user WITHOUT administrative rights: Debian's cockpit-ws 287 on 127.0.0.1 and
//! headless Chromium over WebDriver, as in web_admin.rs.
//!
//! The test starts the root service itself, by pid, with `twostep_tests::self_service`
//! (`twostep serve-self --foreground --socket <a socket of the test's> --pam-service <a PAM
//! service of the test's>`, whose PAM file checks the password with pam_unix alone, as
//! packaging/pam.d/twostep-self does), and a local SMTP server for the mailed codes.
//! The page spawns `/usr/sbin/twostep self ... --json --stdin` as the logged-in user; in
//! cockpit-ws's private mount namespace an overlay over `/usr/sbin` puts there a `twostep` that
//! runs the freshly built CLI with the test's socket (`TWOSTEP_SELF_SOCKET`) and config, and an
//! overlay over `/usr/share/cockpit` adds the page's files from `cockpit/`. The machine's files
//! are never written; the mounts end with the namespace.
//!
//! A new local user (no sudo) logs in to Cockpit and opens the page: they see their own account
//! only (two-step login off), turn it on with their password (a wrong one first: refused, nothing
//! changes), scan the QR code the page shows (zbarimg on the SVG), type a wrong code (refused,
//! nothing enrolled), then oathtool's code: the page shows ten emergency codes once, with Print.
//! The user then logs in through the real libpam with pam_twostep and the next app code, and the
//! page's history shows that login. They set a recovery address (the password, an emergency code
//! as the current code, then the code mailed to the address), mail themselves a code and make new
//! emergency codes with the password and that mailed code; a new one then opens a login, an old
//! one does not. Last, the service stops: the page says to ask the admin to enable
//! twostep-self.socket. No log line holds a secret.
//!
//! Screenshots go to `<target>/test-artifacts/web-self/` (docs/self-service.md shows them).
//! Needs root, the packages of web_admin.rs (.ci/run); fails, never skips. Bounded to [`BUDGET`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use twostep_tests::cockpit::{
    Browser, COCKPIT_PAM, Server, TestUser, assert_logged, clean_stale_users, now, preflight,
    set_budget, start_chromedriver, start_cockpit_ws_with, started,
};
use twostep_tests::oath::{totp, wrong_code};
use twostep_tests::self_service::SelfService;
use twostep_tests::smtp::SmtpServer;
use twostep_tests::{TestEnv, paths};

const BUDGET: Duration = Duration::from_secs(150);

/// The shell's frame of the page (`menu` entry `index` of package `twostep`).
const FRAME: &str = "iframe[name=\"cockpit1:localhost/twostep\"]";

/// Where the page's command is (cockpit/self.js spawns it by this path).
const TWOSTEP: &str = "/usr/sbin/twostep";

#[test]
fn cockpit_self_page_lets_a_non_admin_turn_on_two_step_login_and_log_in() {
    twostep_tests::require_root();
    set_budget(BUDGET);
    preflight();
    for tool in ["zbarimg", "rsvg-convert"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "web_self needs `{tool}` (bash .ci/run installs it)"
        );
    }
    clean_stale_users();
    let shots = paths::target_dir().join("test-artifacts").join("web-self");
    std::fs::create_dir_all(&shots).expect("create the screenshot directory");

    let env = TestEnv::builder("web_self").build();
    let smtp = SmtpServer::start(&env.dir().join("smtp"));
    env.write_config(&env.standard_config(&format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsecurity = \"none\"\n\
         from = \"twostep@example.test\"\ntimeout_secs = 2\nhelper = \"{}\"",
        smtp.port(),
        paths::cli().display()
    )));
    let user = TestUser::create_with("s", &[]);
    env.add_secret(&user.password);
    let service = SelfService::start(&env);
    let ws = start_self_cockpit(&env, service.socket());
    let driver = start_chromedriver(&env);
    let base = format!("http://127.0.0.1:{}/", ws.port);

    let b = Browser::start(&driver, &env.dir().join("profile"), &shots);
    login(&b, &base, &user);
    open_page(&b, &base);
    let state = wait_state(&b, &["not-enrolled", "disabled"]);
    assert_eq!(
        b.execute(
            "return document.getElementById('ts-tabs').getClientRects().length;",
            &[]
        )
        .expect("read the tabs"),
        json!(0),
        "a non-admin sees none of the admin part ({state})"
    );
    b.screenshot("status-off.png");

    // Turn it on: a wrong password first.
    b.click("#self-enable");
    let wrong_password = format!("{}-not", user.password);
    env.add_secret(&wrong_password);
    b.type_into("#self-password", &wrong_password);
    b.click("#self-next");
    let error = modal_error(&b, "wrong-password");
    assert!(!error.is_empty(), "the refusal says why");
    b.screenshot("wrong-password.png");
    assert!(
        !env.record_path(&user.name).exists(),
        "a wrong password enrolls nothing"
    );

    b.type_into("#self-password", &user.password);
    b.click("#self-next");
    let src = b.wait_script(
        "the QR code",
        Duration::from_secs(20),
        "const i = document.getElementById('self-qr'); return i && i.complete ? i.src : null;",
        &[],
    );
    let svg = twostep_tests::smtp::decode_base64(
        src.as_str()
            .and_then(|s| s.strip_prefix("data:image/svg+xml;base64,"))
            .unwrap_or_else(|| panic!("the QR code is not an SVG data URI: {src}")),
    );
    let svg_path = env.dir().join("qr.svg");
    std::fs::write(&svg_path, &svg).expect("write qr.svg");
    let uri = twostep_testkit::qr_decode::zbar_decode(&svg_path);
    let secret = query_param(&uri, "secret")
        .unwrap_or_else(|| panic!("no secret in the decoded QR code {uri}"));
    env.add_secret(&secret);
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&user.name),
        "{uri}"
    );
    assert_eq!(
        text(&b, "#self-secret").replace(' ', ""),
        secret,
        "the key for typing is the QR code's"
    );
    b.screenshot("enable-qr.png");
    assert!(
        !env.record_path(&user.name).exists(),
        "nothing is enrolled before the app's code is confirmed"
    );

    let wrong = wrong_code(&secret, now());
    env.add_secret(&wrong);
    b.type_into("#self-code", &wrong);
    b.click("#self-confirm");
    modal_error(&b, "wrong-code");
    assert!(
        !env.record_path(&user.name).exists(),
        "a wrong code enrolls nothing"
    );

    let t0 = now();
    let code = totp(&secret, t0);
    env.add_secret(&code);
    b.type_into("#self-code", &code);
    b.click("#self-confirm");
    let codes = emergency_codes(&b);
    codes.iter().for_each(|c| env.add_secret(c));
    visible(&b, "#self-print-button");
    b.screenshot("emergency-codes.png");
    b.click("#self-done");
    wait_state(&b, &["enabled"]);
    assert!(
        env.record_path(&user.name).exists(),
        "the record is written"
    );
    b.screenshot("status-on.png");

    // A real login through libpam with pam_twostep and the next app code.
    let t1 = t0 + 90;
    let app_code = totp(&secret, t1);
    env.add_secret(&app_code);
    env.login(&user.name, &[&app_code], t1)
        .assert_result("PAM_SUCCESS");
    b.click("#self-refresh");
    b.wait_script(
        "the login in the history",
        Duration::from_secs(20),
        "const e = document.getElementById('self-last-login'); \
         return !!e && e.textContent.includes(arguments[0]);",
        &[json!(env.service())],
    );

    // A recovery address: the password, a current code (an emergency code: the app's codes of
    // now are older than the login's faked time), then the code mailed to the address.
    wait_state(&b, &["enabled"]);
    b.click("#self-change-email");
    b.type_into("#self-address", "me@example.test");
    b.type_into("#self-password", &user.password);
    b.type_into("#self-current-code", &codes[0]);
    b.click("#self-confirm");
    let mails = smtp.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(mails[0].to, "me@example.test");
    let confirm = mails[0].code().expect("a code in the mail");
    env.add_secret(&confirm);
    b.type_into("#self-code", &confirm);
    b.click("#self-confirm");
    b.wait_script(
        "the saved address",
        Duration::from_secs(20),
        "const e = document.getElementById('self-email'); \
         return !!e && e.textContent.endsWith('@example.test') \
             && !document.getElementById('self-notice').hidden;",
        &[],
    );
    b.screenshot("address-saved.png");

    // A mailed login code, then new emergency codes with the password and that code.
    b.click("#self-send-code");
    b.type_into("#self-password", &user.password);
    b.click("#self-confirm");
    let mails = smtp.wait_for_messages(2, Duration::from_secs(20));
    assert_eq!(mails[1].to, "me@example.test");
    let mailed = mails[1].code().expect("a code in the mail");
    env.add_secret(&mailed);
    wait_state(&b, &["enabled"]);
    b.click("#self-codes");
    b.type_into("#self-password", &user.password);
    b.type_into("#self-current-code", &mailed);
    b.click("#self-confirm");
    let new_codes = emergency_codes(&b);
    new_codes.iter().for_each(|c| env.add_secret(c));
    assert!(
        new_codes.iter().all(|c| !codes.contains(c)),
        "{new_codes:?} {codes:?}"
    );
    b.click("#self-done");
    wait_state(&b, &["enabled"]);
    env.login(&user.name, &[&new_codes[0]], t1 + 30)
        .assert_result("PAM_SUCCESS");
    env.login(&user.name, &[&codes[1]], t1 + 60)
        .assert_refused();

    // The service gone: the page says what to ask for.
    let service_log = service.log();
    drop(service);
    b.click("#self-refresh");
    let unavailable = b.wait_script(
        "the unavailable error",
        Duration::from_secs(20),
        "const e = document.getElementById('self-error'); \
         return !!e && !e.hidden && e.dataset.kind === 'unavailable' ? e.innerText : null;",
        &[],
    );
    assert!(
        unavailable
            .as_str()
            .unwrap_or_default()
            .contains("twostep-self.socket"),
        "{unavailable}"
    );
    b.screenshot("unavailable.png");
    drop(b);

    let mut secrets: Vec<&str> = vec![
        &secret,
        &code,
        &app_code,
        &wrong,
        &user.password,
        &wrong_password,
        &confirm,
        &mailed,
    ];
    secrets.extend(codes.iter().map(String::as_str));
    secrets.extend(new_codes.iter().map(String::as_str));
    for s in &secrets {
        assert!(
            !service_log.contains(s),
            "the service's output holds a secret:\n{service_log}"
        );
    }
    // The service logged the page's requests (who, what, the result), the refusal too.
    assert_logged(&env, &["self-service", &user.name, "wrong-password"]);
    assert_logged(&env, &["self-service", "codes", &user.name, "ok"]);
    env.assert_logs_clean(&secrets);
    drop(driver);
    drop(ws);
    eprintln!(
        "web_self: done in {:.1} s; screenshots in {}",
        started().elapsed().as_secs_f64(),
        shots.display()
    );
}

// --- set-up --------------------------------------------------------------------------------

/// cockpit-ws with the machine's own `cockpit` PAM service (a copy, bind-mounted), the page's
/// files and a `/usr/sbin/twostep` of the test's in its namespace (see the module docs).
fn start_self_cockpit(env: &TestEnv, socket: &Path) -> Server {
    let pam = env.dir().join("cockpit-pam");
    std::fs::copy(COCKPIT_PAM, &pam).expect("copy /etc/pam.d/cockpit");
    let packages = env.dir().join("cockpit-packages");
    let package = packages.join("twostep");
    std::fs::create_dir_all(&package).expect("create the package directory");
    for name in [
        "manifest.json",
        "index.html",
        "twostep.js",
        "self.js",
        "twostep.css",
    ] {
        let to = package.join(name);
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../cockpit")
                .join(name),
            &to,
        )
        .unwrap_or_else(|e| panic!("copy cockpit/{name}: {e}"));
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let sbin = env.dir().join("sbin");
    std::fs::create_dir_all(&sbin).expect("create the sbin directory");
    for dir in [&packages, &package, &sbin] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let wrapper = sbin.join("twostep");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nTWOSTEP_CONFIG='{}' TWOSTEP_SELF_SOCKET='{}' exec '{}' \"$@\"\n",
            env.config_path().display(),
            socket.display(),
            paths::cli().display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let setup = format!(
        "mount -t overlay overlay -o \"lowerdir=$TS_PACKAGES:/usr/share/cockpit\" \
         /usr/share/cockpit || exit 96; \
         mount -t overlay overlay -o \"lowerdir=$TS_SBIN:/usr/sbin\" /usr/sbin || exit 95; \
         [ -x {TWOSTEP} ] || exit 94"
    );
    start_cockpit_ws_with(
        env,
        &pam,
        &setup,
        &[
            ("TS_PACKAGES", packages.as_os_str()),
            ("TS_SBIN", sbin.as_os_str()),
        ],
    )
}

// --- the browser ---------------------------------------------------------------------------

/// Logs in to Cockpit (limited access: the user may not use sudo anyway).
fn login(b: &Browser, base: &str, user: &TestUser) {
    b.submit_password(base, &user.name, &user.password);
    let page = b.wait_outcome("the logged-in shell", &user.name);
    assert!(
        page.logged_in,
        "{} could not log in to Cockpit\n{page}",
        user.name
    );
}

/// Opens the page in the shell and enters its frame.
fn open_page(b: &Browser, base: &str) {
    b.goto(&format!("{base}twostep"));
    b.wait_script(
        "the page's frame",
        Duration::from_secs(20),
        &format!(
            "return !!document.querySelector('{}');",
            FRAME.replace('\'', "\\'")
        ),
        &[],
    );
    b.enter_frame(FRAME);
    b.wait_script(
        "the own-account part",
        Duration::from_secs(20),
        "const p = document.getElementById('self-panel'); \
         return document.readyState === 'complete' && !!p && !p.hidden;",
        &[],
    );
}

/// Waits until the page shows one of `states`, with no dialog open and nothing loading (its
/// buttons are then the ones to click); returns it.
fn wait_state(b: &Browser, states: &[&str]) -> String {
    let v = b.wait_script(
        &format!("the state {}", states.join(" or ")),
        Duration::from_secs(20),
        "const e = document.getElementById('self-state'); \
         const s = e ? e.dataset.state : ''; \
         const err = document.getElementById('self-error'); \
         const panel = document.getElementById('self-panel'); \
         return arguments[0].includes(s) && err.hidden && !panel.dataset.loading \
             && document.getElementById('self-modal-backdrop').hidden ? s : null;",
        &[json!(states)],
    );
    v.as_str().unwrap_or_default().to_string()
}

/// Waits for the dialog's error of `kind`; returns its text.
fn modal_error(b: &Browser, kind: &str) -> String {
    let v = b.wait_script(
        &format!("the {kind} error"),
        Duration::from_secs(20),
        "const e = document.getElementById('self-modal-error'); \
         return !!e && !e.hidden ? [e.dataset.kind, e.innerText] : null;",
        &[],
    );
    assert_eq!(v[0], json!(kind), "the dialog shows {v}");
    v[1].as_str().unwrap_or_default().to_string()
}

/// The emergency codes the dialog shows (ten).
fn emergency_codes(b: &Browser) -> Vec<String> {
    let codes = b.wait_script(
        "the emergency codes",
        Duration::from_secs(20),
        "const l = document.querySelectorAll('#self-codes-list li'); \
         return l.length ? Array.from(l).map((x) => x.textContent) : null;",
        &[],
    );
    let codes: Vec<String> = codes
        .as_array()
        .expect("codes array")
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    codes
}

fn text(b: &Browser, css: &str) -> String {
    let v: Value = b
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            &[json!(css)],
        )
        .expect("read text");
    v.as_str()
        .unwrap_or_else(|| panic!("no element {css}"))
        .to_string()
}

fn visible(b: &Browser, css: &str) {
    let shown = b
        .execute(
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.getClientRects().length > 0;",
            &[json!(css)],
        )
        .expect("check visibility");
    assert_eq!(shown, json!(true), "{css} is not shown");
}

fn query_param(uri: &str, key: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}
