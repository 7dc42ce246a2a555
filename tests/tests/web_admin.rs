//! The Cockpit admin page (cockpit/, docs/web-admin.md) in a real Cockpit: Debian's cockpit-ws
//! 287 on 127.0.0.1 and headless Chromium over WebDriver, as in web_cockpit.rs.
//!
//! The package is installed from this tree into cockpit-ws's private mount namespace only: an
//! overlay over `/usr/share/cockpit` adds `twostep/` (the files of `cockpit/`, as the package
//! installs them), and a tmpfs over `/usr/local/sbin` (first in sudo's `secure_path`) holds a
//! `twostep` that runs the freshly built CLI with the test's config. The machine's files are
//! never written; the mounts end with the namespace.
//!
//! An administrator (a test user in group `sudo`; Cockpit's "administrative access" through
//! sudo, as a real admin gets it) logs in and:
//! 1. sees every local user in the list, enrolls one by decoding the QR code the page shows
//!    (zbarimg on the SVG) and typing oathtool's code, after a wrong code that is refused; the
//!    page shows the emergency codes once; the user then logs in through the real libpam
//!    (pam-drive) with an app code and with one of those emergency codes;
//! 2. changes the policy while the file is changed from the terminal: the page refuses to
//!    overwrite it and shows the new file; then enforces a group and a grace period: the TOML
//!    file keeps its comments, and the group's member shows as Incomplete;
//! 3. resets and restores the user (the restored emergency codes work again);
//! 4. sees the error text when the CLI is missing, the doctor's lines on the Health tab, and the page in Cockpit's dark mode.
//!
//! Then a user without administrative rights opens the page: it shows only their own account
//! (self.js, tested in web_self.rs), none of the admin part: no tab, no user data, no control
//! outside the own-account panel, and nothing runs as root. Screenshots go to `<target>/test-artifacts/web-admin/` (docs/web-admin.md
//! shows them). Needs root, the packages of web_cockpit.rs plus `sudo`, `zbar-tools`,
//! `librsvg2-bin` (.ci/run); fails, never skips. Bounded to [`BUDGET`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use twostep_tests::cockpit::{
    Browser, COCKPIT_PAM, Server, TestUser, clean_stale_users, now, preflight, run_ok, set_budget,
    start_chromedriver, start_cockpit_ws_with, started,
};
use twostep_tests::oath::totp;
use twostep_tests::{TestEnv, paths};

const BUDGET: Duration = Duration::from_secs(150);

/// The test's config: the comments must survive the page's edits.
const CONFIG: &str = "\
# twostep.toml of the web_admin test. These comments must survive `twostep config set`.
state_dir = \"{state_dir}\"
issuer = \"twostep-tests\"

[policy]
# Seconds without a code after a right one; the page changes this.
grace_period = 0   # off

[log]
socket = \"{log_socket}\"
";

/// The shell's frame of the page (`menu` entry `index` of package `twostep`).
const FRAME: &str = "iframe[name=\"cockpit1:localhost/twostep\"]";

#[test]
fn cockpit_admin_page_enrolls_edits_policy_resets_and_refuses_non_admins() {
    twostep_tests::require_root();
    set_budget(BUDGET);
    preflight();
    for tool in ["sudo", "zbarimg", "groupadd", "groupdel"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "web_admin needs `{tool}` (bash .ci/run installs it)"
        );
    }
    clean_stale_users();
    let shots = paths::target_dir().join("test-artifacts").join("web-admin");
    std::fs::create_dir_all(&shots).expect("create the screenshot directory");
    for entry in std::fs::read_dir(&shots)
        .expect("list the screenshots")
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("timeout-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }

    let env = TestEnv::builder("web_admin").raw_config(CONFIG).build();
    let group = TestGroup::create(&format!("tsweb{}g", std::process::id()));
    let admin = TestUser::create_with("a", &["sudo"]);
    let carol = TestUser::create_with("c", &[]);
    let dave = TestUser::create_with("d", &[&group.name]);
    for user in [&admin, &carol, &dave] {
        env.add_secret(&user.password);
    }
    let ws = start_admin_cockpit(&env);
    let driver = start_chromedriver(&env);
    let base = format!("http://127.0.0.1:{}/", ws.port);

    // --- an administrator ---
    let b = Browser::start(&driver, &env.dir().join("profile-admin"), &shots);
    login(&b, &base, &admin, true);
    open_page(&b, &base);
    wait_state(&b, &carol.name, "disabled");
    wait_state(&b, &dave.name, "disabled");
    wait_state(&b, "root", "disabled");
    b.screenshot("users.png");

    // The CLI missing: the page shows the error text, and recovers when it is back.
    let link = env.dir().join("cli");
    std::fs::rename(&link, env.dir().join("cli.away")).expect("take the CLI away");
    b.click("#ts-refresh");
    let error = b.wait_script(
        "the missing CLI's error",
        Duration::from_secs(20),
        "const e = document.getElementById('ts-error'); \
         return !e.hidden ? document.getElementById('ts-error-text').textContent : null;",
        &[],
    );
    assert!(
        error.as_str().unwrap_or_default().contains("not found"),
        "the page shows the failure: {error}"
    );
    b.screenshot("cli-missing.png");
    std::fs::rename(env.dir().join("cli.away"), &link).expect("bring the CLI back");
    b.click("#ts-refresh");
    wait_state(&b, &carol.name, "disabled");
    visible_not(&b, "#ts-error");

    // 1. Enroll carol: the QR code the page shows, a wrong code, then the app's code.
    action(&b, &carol.name, "enroll");
    b.click("#ts-next");
    let src = b.wait_script(
        "the QR code",
        Duration::from_secs(20),
        "const i = document.getElementById('ts-qr'); return i && i.complete ? i.src : null;",
        &[],
    );
    let svg = twostep_tests::smtp::decode_base64(
        src.as_str()
            .and_then(|s| s.strip_prefix("data:image/svg+xml;base64,"))
            .unwrap_or_else(|| panic!("the QR code is not an SVG data URI: {src}")),
    );
    let svg_path = env.dir().join("qr.svg");
    std::fs::write(&svg_path, &svg).expect("write qr.svg");
    let uri = zbarimg(&svg_path);
    let secret = query_param(&uri, "secret")
        .unwrap_or_else(|| panic!("no secret in the decoded QR code {uri}"));
    env.add_secret(&secret);
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&carol.name),
        "{uri}"
    );
    let typed_key = text(&b, "#ts-secret").replace(' ', "");
    assert_eq!(typed_key, secret, "the key for typing is the QR code's");
    b.screenshot("enroll-qr.png");
    assert!(
        !env.record_path(&carol.name).exists(),
        "nothing is enrolled before the app's code is confirmed"
    );

    let wrong = twostep_tests::oath::wrong_code(&secret, now());
    env.add_secret(&wrong);
    b.type_into("#ts-code", &wrong);
    b.click("#ts-confirm");
    let error = b.wait_script(
        "the wrong code's error",
        Duration::from_secs(20),
        "const e = document.getElementById('ts-modal-error'); \
         return e && !e.hidden ? e.innerText : null;",
        &[],
    );
    assert!(
        error
            .as_str()
            .unwrap_or_default()
            .contains("does not match"),
        "a wrong code shows the CLI's error: {error}"
    );
    b.screenshot("enroll-wrong-code.png");
    assert!(
        !env.record_path(&carol.name).exists(),
        "a wrong code enrolls nothing"
    );

    let t0 = now();
    let code = totp(&secret, t0);
    env.add_secret(&code);
    b.type_into("#ts-code", &code);
    b.click("#ts-confirm");
    let codes = b.wait_script(
        "the emergency codes",
        Duration::from_secs(20),
        "const l = document.querySelectorAll('#ts-codes li'); \
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
    codes.iter().for_each(|c| env.add_secret(c));
    for button in ["#ts-print-button", "#ts-download", "#ts-done"] {
        visible(&b, button);
    }
    b.screenshot("emergency-codes.png");
    b.click("#ts-done");
    wait_state(&b, &carol.name, "enabled");

    // carol logs in through the real libpam: with the app, then with an emergency code.
    let t1 = t0 + 90;
    let app_code = totp(&secret, t1);
    env.add_secret(&app_code);
    env.login(&carol.name, &[&app_code], t1)
        .assert_result("PAM_SUCCESS");
    env.login(&carol.name, &[&codes[0]], t1 + 30)
        .assert_result("PAM_SUCCESS");

    // 2. Policy. The file changes from the terminal while the page shows it: the page's save
    //    is refused and it shows the file as it is now.
    b.click("#tab-policy");
    b.wait_script(
        "the policy form",
        Duration::from_secs(20),
        "return document.getElementById('pol-grace').value === '0';",
        &[],
    );
    let out = env.cli(&["config", "set", "lockout.max_failures", "7"]);
    assert!(out.status.success(), "{out:?}");
    b.type_into("#pol-enforce-groups", &group.name);
    b.click("#pol-save");
    let error = b.wait_script(
        "the refused save",
        Duration::from_secs(20),
        "const e = document.getElementById('ts-error'); \
         return !e.hidden && document.getElementById('pol-max-failures').value === '7' \
             ? document.getElementById('ts-error-text').textContent : null;",
        &[],
    );
    assert!(
        error
            .as_str()
            .unwrap_or_default()
            .contains("changed since it was read"),
        "{error}"
    );
    assert_eq!(
        value(&b, "#pol-enforce-groups"),
        "",
        "the page re-read the file"
    );
    let toml = std::fs::read_to_string(env.config_path()).expect("read the config");
    assert!(
        !toml.contains(&group.name),
        "nothing was overwritten:\n{toml}"
    );
    b.screenshot("policy-changed-elsewhere.png");

    b.type_into("#pol-enforce-groups", &group.name);
    clear(&b, "#pol-grace");
    b.type_into("#pol-grace", "3600");
    b.click("#pol-save");
    b.wait_script(
        "the saved policy",
        Duration::from_secs(20),
        "return document.getElementById('pol-status').textContent === 'Saved.';",
        &[],
    );
    let toml = std::fs::read_to_string(env.config_path()).expect("read the config");
    for kept in [
        "# twostep.toml of the web_admin test. These comments must survive `twostep config set`.\n",
        "# Seconds without a code after a right one; the page changes this.\n",
        "grace_period = 3600   # off\n",
        "max_failures = 7\n",
    ] {
        assert!(toml.contains(kept), "{kept:?} missing from\n{toml}");
    }
    assert!(
        toml.contains(&format!("enforce_groups = [\"{}\"]", group.name)),
        "{toml}"
    );
    b.screenshot("policy.png");
    b.click("#tab-users");
    wait_state(&b, &dave.name, "incomplete");
    b.screenshot("users-enforced.png");

    // 3. Reset (lost phone) and restore.
    action(&b, &carol.name, "reset");
    b.screenshot("reset-confirm.png");
    b.click("#ts-confirm");
    wait_state(&b, &carol.name, "disabled");
    assert!(
        !env.record_path(&carol.name).exists(),
        "reset removed the record"
    );
    action(&b, &carol.name, "restore");
    b.click("#ts-confirm");
    wait_state(&b, &carol.name, "enabled");
    env.login(&carol.name, &[&codes[1]], t1 + 60)
        .assert_result("PAM_SUCCESS");

    // SMB gates: a two-step login from an address (now, by the real clock the CLI reads)
    // opens one; the page shows it and closes it.
    env.attempt(&carol.name)
        .rhost("192.0.2.44")
        .answer(&codes[2])
        .time(now())
        .run()
        .assert_result("PAM_SUCCESS");
    b.click("#ts-refresh");
    b.wait_script(
        "carol's open gate",
        Duration::from_secs(20),
        "const c = document.querySelector('tr[data-user=\"' + arguments[0] + '\"] .ts-gates'); \
         return !!c && c.textContent === '1';",
        &[json!(carol.name)],
    );
    action(&b, &carol.name, "close-gates");
    b.screenshot("close-smb-access.png");
    b.click("#ts-confirm");
    b.wait_script(
        "carol's gate closed",
        Duration::from_secs(20),
        "const c = document.querySelector('tr[data-user=\"' + arguments[0] + '\"] .ts-gates'); \
         return !!c && c.textContent === '-';",
        &[json!(carol.name)],
    );
    let out = env.cli(&["gate", "list", &carol.name, "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "{out:?}");

    // 4. Health: the doctor's lines.
    b.click("#tab-health");
    let lines = b.wait_script(
        "the doctor's lines",
        Duration::from_secs(30),
        "const l = document.querySelectorAll('#ts-doctor li'); \
         return l.length >= 3 ? Array.from(l).map((x) => x.textContent) : null;",
        &[],
    );
    let lines = lines.to_string();
    assert!(
        lines.contains("config") && lines.contains("state"),
        "{lines}"
    );
    b.screenshot("health.png");

    // Dark mode follows Cockpit's (the shell's choice, in localStorage `shell:style`).
    b.leave_frame();
    b.execute(
        "localStorage.setItem('shell:style', 'dark'); return true;",
        &[],
    )
    .expect("set the style");
    open_page(&b, &base);
    b.wait_script(
        "the dark theme",
        Duration::from_secs(20),
        "return document.documentElement.classList.contains('pf-theme-dark') \
             && document.querySelectorAll('#ts-users-body tr').length > 0;",
        &[],
    );
    b.screenshot("users-dark.png");

    // The admin's own account is a tab of its own: it runs `twostep self` as the admin, not as
    // root. No self-service runs here (and /usr/sbin/twostep is the machine's, if any), so it
    // can only say so; web_self.rs tests that part with the service.
    b.click("#tab-self");
    let kind = b.wait_script(
        "the admin's own account",
        Duration::from_secs(20),
        "const p = document.getElementById('self-panel'); \
         const e = document.getElementById('self-error'); \
         return !!p && !p.hidden && !e.hidden ? e.dataset.kind : null;",
        &[],
    );
    assert!(
        ["missing", "unavailable"].contains(&kind.as_str().unwrap_or_default()),
        "the own-account tab: {kind}"
    );
    visible_not(&b, "#ts-users");
    drop(b);

    // --- a user without administrative rights ---
    let config_before = std::fs::read(env.config_path()).expect("read the config");
    let logs_before = env.logs().len();
    let b = Browser::start(&driver, &env.dir().join("profile-user"), &shots);
    login(&b, &base, &dave, false);
    open_page(&b, &base);
    b.wait_script(
        "the own-account part and the admin-access hint",
        Duration::from_secs(20),
        "const e = document.getElementById('ts-admin-needed'); \
         const p = document.getElementById('self-panel'); \
         return !!e && !e.hidden && !!p && !p.hidden;",
        &[],
    );
    // Give the page time to (wrongly) start anything before checking.
    std::thread::sleep(Duration::from_millis(500));
    let controls = b
        .execute(
            "return Array.from(document.querySelectorAll('button, input, select'))\
                 .filter((e) => e.getClientRects().length > 0 && !e.disabled \
                     && !e.closest('#self-panel')).length;",
            &[],
        )
        .expect("count controls");
    assert_eq!(
        controls,
        json!(0),
        "a non-admin sees no working control but their own account's"
    );
    visible_not(&b, "#ts-tabs");
    let rows = b
        .execute(
            "return document.querySelectorAll('#ts-users-body tr').length;",
            &[],
        )
        .expect("count rows");
    assert_eq!(rows, json!(0), "a non-admin sees no user data");
    b.screenshot("limited-access.png");
    drop(b);
    assert_eq!(
        std::fs::read(env.config_path()).expect("read the config"),
        config_before
    );
    assert_eq!(
        env.logs().len(),
        logs_before,
        "the non-admin session ran nothing"
    );

    let mut secrets: Vec<&str> = vec![&secret, &code, &app_code];
    secrets.extend(codes.iter().map(String::as_str));
    env.assert_logs_clean(&secrets);
    drop(driver);
    drop(ws);
    eprintln!(
        "web_admin: done in {:.1} s; screenshots in {}",
        started().elapsed().as_secs_f64(),
        shots.display()
    );
}

// --- set-up --------------------------------------------------------------------------------

/// cockpit-ws with the machine's own `cockpit` PAM service (a copy, bind-mounted) and the
/// package and CLI installed into its namespace (see the module docs).
fn start_admin_cockpit(env: &TestEnv) -> Server {
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
    for dir in [&packages, &package] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // The wrapper runs the CLI through a link the test can take away (the "CLI missing" case).
    std::os::unix::fs::symlink(paths::cli(), env.dir().join("cli")).expect("link the CLI");
    let wrapper = env.dir().join("twostep-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nTWOSTEP_CONFIG='{}' exec '{}' \"$@\"\n",
            env.config_path().display(),
            env.dir().join("cli").display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let setup = "mount -t overlay overlay -o \"lowerdir=$TS_PACKAGES:/usr/share/cockpit\" \
                 /usr/share/cockpit || exit 96; \
                 mount -t tmpfs -o mode=0755 tmpfs /usr/local/sbin || exit 95; \
                 cp \"$TS_WRAPPER\" /usr/local/sbin/twostep && chmod 0755 /usr/local/sbin/twostep \
                 || exit 94";
    start_cockpit_ws_with(
        env,
        &pam,
        setup,
        &[
            ("TS_PACKAGES", packages.as_os_str()),
            ("TS_WRAPPER", wrapper.as_os_str()),
        ],
    )
}

/// A local group for the test; removed on drop.
#[derive(Debug)]
struct TestGroup {
    name: String,
}

impl TestGroup {
    fn create(name: &str) -> TestGroup {
        let _ = Command::new("groupdel").arg(name).output();
        run_ok(Command::new("groupadd").arg(name));
        TestGroup {
            name: name.to_string(),
        }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

// --- the browser ---------------------------------------------------------------------------

/// Logs in to Cockpit; with `admin`, asks for administrative access at login (what Cockpit
/// remembers for a user who chose it before: the login page then sends `X-Superuser: any`).
fn login(b: &Browser, base: &str, user: &TestUser, admin: bool) {
    b.goto(base);
    b.wait_script(
        "the login page",
        Duration::from_secs(20),
        "return !!document.getElementById('login-user-input');",
        &[],
    );
    if admin {
        b.execute(
            "localStorage.setItem('superuser:' + arguments[0], 'any'); return true;",
            &[json!(user.name)],
        )
        .expect("set localStorage");
    }
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
        "the page's script",
        Duration::from_secs(20),
        "return document.readyState === 'complete' && !!document.getElementById('ts-page');",
        &[],
    );
}

fn wait_state(b: &Browser, user: &str, state: &str) {
    b.wait_script(
        &format!("{user} {state}"),
        Duration::from_secs(20),
        "const r = document.querySelector('tr[data-user=\"' + arguments[0] + '\"]'); \
         return !!r && r.dataset.state === arguments[1];",
        &[json!(user), json!(state)],
    );
}

/// Opens the row's actions menu and picks `action`.
fn action(b: &Browser, user: &str, action: &str) {
    b.click(&format!("tr[data-user=\"{user}\"] .ts-actions-toggle"));
    b.click(&format!(
        "tr[data-user=\"{user}\"] button[data-action=\"{action}\"]"
    ));
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

fn value(b: &Browser, css: &str) -> String {
    let v = b
        .execute(
            "return document.querySelector(arguments[0]).value;",
            &[json!(css)],
        )
        .expect("read value");
    v.as_str().unwrap_or_default().to_string()
}

fn clear(b: &Browser, css: &str) {
    b.execute(
        "document.querySelector(arguments[0]).value = ''; return true;",
        &[json!(css)],
    )
    .expect("clear");
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

fn visible_not(b: &Browser, css: &str) {
    let shown = b
        .execute(
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.getClientRects().length > 0;",
            &[json!(css)],
        )
        .expect("check visibility");
    assert_eq!(shown, json!(false), "{css} is still shown");
}

// --- QR codes ------------------------------------------------------------------------------

/// The text of the QR code in an image file, decoded by zbarimg.
fn zbarimg(path: &Path) -> String {
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(path)
        .output()
        .expect("run zbarimg");
    assert!(out.status.success(), "zbarimg found no QR code: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn query_param(uri: &str, key: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}
