//! Two-step login through a real web login page: Cockpit (Debian's cockpit-ws 287) in headless
//! Chromium, driven over WebDriver by chromedriver.
//!
//! The test creates a local user (useradd + chpasswd), enrolls it, and starts `cockpit-ws
//! --no-tls` on 127.0.0.1 in a private mount namespace in which the PAM service `cockpit` (a
//! name compiled into cockpit-session) is this test's service file, bind-mounted over
//! `/etc/pam.d/cockpit`: the machine's own file is never written, and the mount disappears with
//! the namespace however the test ends. That file is Debian's `/etc/pam.d/cockpit` with the edit
//! docs/web.md describes, loading the freshly built module with a test config.
//!
//! Scenarios, each in a fresh browser profile:
//! 1. wrong password: Cockpit says "Wrong user name or password" and the module is never asked;
//! 2. password, then the verification code on Cockpit's second page: logged in to the shell,
//!    with a cockpit-bridge running as the user;
//! 3. password, then a wrong code: refused with "Authentication failed"; the config's
//!    `max_failures = 1` locks the user;
//! 4. locked user, right password: refused without a code prompt (Cockpit says "Wrong user name
//!    or password": it drops the module's lockout message).
//!
//! Screenshots go to `<target>/test-artifacts/web/`. Needs root, the Debian packages
//! `cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver oathtool` (see .ci/run),
//! and fails (never skips) when any of them is missing or broken. Bounded to [`BUDGET`]. The
//! machinery (servers, browser, users) is shared with web_admin.rs in `twostep_tests::cockpit`.

use std::time::Duration;

use twostep_tests::cockpit::{
    Browser, COCKPIT_PAM, TestUser, assert_logged, clean_stale_users, comm, now, preflight,
    processes_of_uid, set_budget, start_chromedriver, start_cockpit_ws, started,
};
use twostep_tests::oath::{self, totp};
use twostep_tests::{TestEnv, paths};

/// 20 random bytes, base32.
const SECRET: &str = "MZ2V6KOC2BLRXYA3HPXTQ6KJH4NW6SPD";
/// The whole test must end within this (it fails past it).
const BUDGET: Duration = Duration::from_secs(110);

/// Cockpit's messages (login.js) and our prompt.
const PROMPT: &str = "Verification code: ";
const WRONG_PASSWORD: &str = "Wrong user name or password";
const AUTH_FAILED: &str = "Authentication failed";

#[test]
fn cockpit_web_login_asks_for_the_code_on_a_second_page() {
    twostep_tests::require_root();
    set_budget(BUDGET);
    preflight();
    clean_stale_users();
    let shots = paths::target_dir().join("test-artifacts").join("web");
    std::fs::create_dir_all(&shots)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", shots.display()));
    let pam_before = std::fs::read(COCKPIT_PAM).expect("read /etc/pam.d/cockpit");

    let stack = cockpit_stack(&String::from_utf8_lossy(&pam_before));
    // Declared in this order so that they are dropped in the reverse one: browser sessions,
    // chromedriver, cockpit-ws and its sessions, the user, then the environment.
    let env = TestEnv::builder("web_cockpit")
        .config("[lockout]\nmax_failures = 1")
        .stack(&stack.iter().map(String::as_str).collect::<Vec<_>>())
        .build();
    let user = TestUser::create();
    env.add_secret(&user.password);
    env.enroll(&user.name, SECRET);
    let ws = start_cockpit_ws(&env);
    let driver = start_chromedriver(&env);
    let base = format!("http://127.0.0.1:{}/", ws.port);
    let mut profiles = 0;
    let mut browser = || {
        profiles += 1;
        Browser::start(
            &driver,
            &env.dir().join(format!("profile-{profiles}")),
            &shots,
        )
    };

    // 1. A wrong password ends the login before the module: no code page, nothing logged.
    let logs_before = env.logs().len();
    let b = browser();
    b.submit_password(&base, &user.name, "not-the-password");
    let page = b.wait_outcome("the answer to a wrong password", &user.name);
    b.screenshot("wrong-password.png");
    assert_eq!(
        page.error.as_deref(),
        Some(WRONG_PASSWORD),
        "a wrong password must be refused before the code prompt\n{page}"
    );
    let logs = env.logs().split_off(logs_before);
    assert!(
        logs.is_empty(),
        "pam_twostep must not run after a wrong password: {logs:?}"
    );
    drop(b);

    // 2. Password, then the code on a second page: logged in.
    let b = browser();
    b.submit_password(&base, &user.name, &user.password);
    let page = b.wait_outcome("the code page", &user.name);
    b.screenshot("code-prompt.png");
    assert_eq!(
        page.prompt.as_deref(),
        Some(PROMPT),
        "Cockpit must show our prompt on a second page\n{page}"
    );
    assert_eq!(page.input_type, "password", "the code field must not echo");
    let code = totp(SECRET, now());
    env.add_secret(&code);
    b.answer_prompt(&code);
    let page = b.wait_outcome("the logged-in shell", &user.name);
    assert!(page.logged_in, "the right code must log in\n{page}");
    b.wait_shell_content(&user.name);
    b.screenshot("logged-in.png");
    assert!(
        processes_of_uid(user.uid)
            .iter()
            .any(|pid| comm(*pid) == "cockpit-bridge"),
        "a logged-in Cockpit session runs cockpit-bridge as the user"
    );
    assert_logged(&env, &["auth success", &user.name, "service=cockpit"]);
    drop(b);

    // 3. Password, then a wrong code: refused with Cockpit's message (and locked: max 1).
    let b = browser();
    b.submit_password(&base, &user.name, &user.password);
    let page = b.wait_outcome("the code page", &user.name);
    assert_eq!(page.prompt.as_deref(), Some(PROMPT), "{page}");
    let wrong = wrong_code(now());
    env.add_secret(&wrong);
    b.answer_prompt(&wrong);
    let page = b.wait_outcome("the answer to a wrong code", &user.name);
    b.screenshot("wrong-code.png");
    assert!(!page.logged_in, "a wrong code must not log in\n{page}");
    assert_eq!(
        page.error.as_deref(),
        Some(AUTH_FAILED),
        "a wrong code is refused with Cockpit's message\n{page}"
    );
    assert_logged(
        &env,
        &["auth failure", &user.name, "service=cockpit", "wrong-code"],
    );
    drop(b);

    // 4. Locked: the right password is refused without asking for a code.
    let logs_before = env.logs().len();
    let b = browser();
    b.submit_password(&base, &user.name, &user.password);
    let page = b.wait_outcome("the answer to a locked user", &user.name);
    b.screenshot("locked.png");
    // Cockpit shows a module's error message only together with a later prompt: a locked user
    // sees Cockpit's generic message (documented in docs/web.md).
    assert!(
        page.prompt.is_none() && !page.logged_in,
        "a locked user is refused without a code prompt\n{page}"
    );
    assert_eq!(page.error.as_deref(), Some(WRONG_PASSWORD), "{page}");
    let logs = env.logs().split_off(logs_before);
    assert!(
        logs.iter()
            .any(|l| l.contains(&user.name) && l.contains("reason=locked")),
        "the module refused the locked user: {logs:?}"
    );
    drop(b);

    env.assert_logs_clean(&[SECRET, &user.password, &code, &wrong]);
    drop(driver);
    drop(ws);
    assert_eq!(
        std::fs::read(COCKPIT_PAM).expect("read /etc/pam.d/cockpit"),
        pam_before,
        "/etc/pam.d/cockpit changed on the machine"
    );
    eprintln!(
        "web_cockpit: done in {:.1} s; screenshots in {}",
        started().elapsed().as_secs_f64(),
        shots.display()
    );
}

// --- the PAM stack -------------------------------------------------------------------------

/// Debian's /etc/pam.d/cockpit with the edit of docs/web.md: `auth substack common-auth`
/// becomes `auth include common-auth` (so a wrong password ends the stack), followed by the
/// module line.
fn cockpit_stack(stock: &str) -> Vec<String> {
    let is_substack = |line: &str| {
        line.split_whitespace().collect::<Vec<_>>() == ["auth", "substack", "common-auth"]
    };
    assert_eq!(
        stock.lines().filter(|line| is_substack(line)).count(),
        1,
        "{COCKPIT_PAM} has no single `auth substack common-auth` line (Debian's cockpit-ws 287 \
         has one); update docs/web.md and this test:\n{stock}"
    );
    let mut lines = Vec::new();
    for line in stock.lines() {
        if is_substack(line) {
            lines.push("auth include common-auth".to_string());
            lines.push("auth required {module} config={config}".to_string());
        } else {
            lines.push(line.to_string());
        }
    }
    lines
}

/// A 6-digit code that is not valid for SECRET within two steps of `t`.
fn wrong_code(t: i64) -> String {
    oath::wrong_code(SECRET, t)
}

#[test]
fn base64_decodes() {
    assert_eq!(twostep_tests::smtp::decode_base64("aGVsbG8="), b"hello");
    assert_eq!(twostep_tests::smtp::decode_base64("aGk="), b"hi");
    assert_eq!(twostep_tests::smtp::decode_base64("YWJj"), b"abc");
}
