//! PAM service files as libpam reads them, for `twostep doctor`: comments, `\` line
//! continuations, `-type` lines, `[value=action ...]` controls, `@include`, `include` and
//! `substack`, flattened into one auth stack per service; and the paths through that stack
//! (which lines can fail while the stack goes on). docs/pam.md, "What twostep doctor checks".

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// libpam's own limit on nested includes and substacks.
pub const MAX_DEPTH: usize = 16;

/// Where a line comes from: file and 1-based line number (of its first physical line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What a module's return value makes libpam do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ok,
    Done,
    Bad,
    Die,
    Ignore,
    Reset,
    /// Skip this many following lines.
    Jump(usize),
}

/// A control field: a keyword or `[value=action ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Required,
    Requisite,
    Sufficient,
    Optional,
    Include,
    Substack,
    Brackets(BTreeMap<String, Action>),
}

/// The failure values a password module returns (wrong password, unknown user, …).
pub const FAILURE_VALUES: &[&str] = &[
    "auth_err",
    "user_unknown",
    "cred_insufficient",
    "authinfo_unavail",
    "maxtries",
    "perm_denied",
    "system_err",
    "service_err",
    "abort",
];

impl Control {
    fn parse(text: &str) -> Result<Control, String> {
        Ok(match text {
            "required" => Control::Required,
            "requisite" => Control::Requisite,
            "sufficient" => Control::Sufficient,
            "optional" => Control::Optional,
            "include" => Control::Include,
            "substack" => Control::Substack,
            _ => {
                let inner = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .ok_or_else(|| format!("unknown control {text:?}"))?;
                let mut map = BTreeMap::new();
                for pair in inner.split_whitespace() {
                    let (value, action) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("{pair:?} in {text} is not value=action"))?;
                    let action = match action {
                        "ok" => Action::Ok,
                        "done" => Action::Done,
                        "bad" => Action::Bad,
                        "die" => Action::Die,
                        "ignore" => Action::Ignore,
                        "reset" => Action::Reset,
                        n => Action::Jump(
                            n.parse()
                                .map_err(|_| format!("unknown action {n:?} in {text}"))?,
                        ),
                    };
                    map.insert(value.to_ascii_lowercase(), action);
                }
                Control::Brackets(map)
            }
        })
    }

    /// The action for a return value: `success`, `ignore` or one of [`FAILURE_VALUES`].
    /// In brackets a value not named takes `default=`, and a missing `default=` means `bad`
    /// (as in libpam).
    pub fn action(&self, value: &str) -> Action {
        let keyword = |success, ignore, failure| match value {
            "success" => success,
            "ignore" => ignore,
            _ => failure,
        };
        match self {
            Control::Required => keyword(Action::Ok, Action::Ignore, Action::Bad),
            Control::Requisite => keyword(Action::Ok, Action::Ignore, Action::Die),
            Control::Sufficient => keyword(Action::Done, Action::Ignore, Action::Ignore),
            Control::Optional => keyword(Action::Ok, Action::Ignore, Action::Ignore),
            // Not reached: includes are flattened.
            Control::Include | Control::Substack => Action::Ok,
            Control::Brackets(map) => map
                .get(value)
                .or_else(|| map.get("default"))
                .copied()
                .unwrap_or(Action::Bad),
        }
    }

    /// Whether every failure value ends the stack (`requisite`, `[success=ok default=die]`).
    #[cfg(test)]
    pub fn failure_ends_stack(&self) -> bool {
        FAILURE_VALUES.iter().all(|v| self.action(v) == Action::Die)
    }
}

/// One module line of a flattened stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub origin: Origin,
    /// The line's fields joined by single spaces (continuations joined), for messages.
    pub text: String,
    pub kind: String,
    pub control: Control,
    pub module: String,
    pub args: Vec<String>,
    /// Inside a substack: the index (in the flattened stack) just after the substack, where
    /// `die` and `done` continue.
    pub substack_end: Option<usize>,
}

impl Rule {
    /// The module's file name without directories (`pam_unix.so`).
    pub fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }
}

/// A service's auth stack, and what could not be read or followed.
#[derive(Debug, Default)]
pub struct Stack {
    pub rules: Vec<Rule>,
    /// Lines libpam would reject or includes not followed, as `origin: why`.
    pub problems: Vec<String>,
}

/// One logical line: comments removed, continuations joined, split into fields. A `[...]`
/// field (control or argument) may contain spaces; `\]` inside it is a literal `]`.
pub fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if current.is_empty() {
            start = i + 1;
        }
        let without_comment = raw.split('#').next().unwrap_or("");
        let trimmed = without_comment.trim_end();
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        if !current.trim().is_empty() {
            out.push((start, current.trim().to_string()));
        }
        current.clear();
    }
    if !current.trim().is_empty() {
        out.push((start, current.trim().to_string()));
    }
    out
}

/// Splits a logical line into fields, keeping `[...]` groups whole.
pub fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut field = String::new();
        if c == '[' {
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&']') {
                    field.push(']');
                    chars.next();
                    continue;
                }
                field.push(c);
                if c == ']' {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err(format!("unclosed [ in {line:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        out.push(field);
    }
    Ok(out)
}

/// Reads `service` from `pam_dir` and flattens its auth stack.
pub fn auth_stack(pam_dir: &Path, service: &str) -> Stack {
    stack_of(pam_dir, service, "auth")
}

/// Reads `service` from `pam_dir` and flattens its stack of `kind` (`auth`, `account`, ...).
pub fn stack_of(pam_dir: &Path, service: &str, kind: &str) -> Stack {
    let mut stack = Stack::default();
    let mut chain = Vec::new();
    let start = Origin {
        file: pam_dir.join(service),
        line: 0,
    };
    add_file(
        pam_dir,
        &pam_dir.join(service),
        &start,
        &mut chain,
        &mut stack,
        (kind, 0),
    );
    stack
}

/// Adds the lines of `file` for the stack `kind` to `stack`, `depth` includes down. `chain`
/// holds the files being read (a file including itself is a loop).
fn add_file(
    pam_dir: &Path,
    file: &Path,
    from: &Origin,
    chain: &mut Vec<PathBuf>,
    stack: &mut Stack,
    (kind, depth): (&str, usize),
) {
    let text = match read_within(pam_dir, file, chain) {
        Ok(text) => text,
        Err(why) => {
            stack.problems.push(format!("{from}: {why}"));
            return;
        }
    };
    if depth > MAX_DEPTH {
        stack.problems.push(format!(
            "{from}: includes nested deeper than {MAX_DEPTH}: not followed (libpam fails the service)"
        ));
        return;
    }
    chain.push(file.to_path_buf());
    for (number, line) in logical_lines(&text) {
        let origin = Origin {
            file: file.to_path_buf(),
            line: number,
        };
        let fields = match fields(&line) {
            Ok(f) => f,
            Err(why) => {
                stack.problems.push(format!("{origin}: {why}"));
                continue;
            }
        };
        if fields[0] == "@include" {
            match fields.get(1) {
                Some(name) => {
                    let target = include_path(pam_dir, name);
                    add_file(pam_dir, &target, &origin, chain, stack, (kind, depth + 1));
                }
                None => stack
                    .problems
                    .push(format!("{origin}: @include without a file")),
            }
            continue;
        }
        if fields[0].trim_start_matches('-').to_ascii_lowercase() != kind {
            continue;
        }
        if fields.len() < 3 {
            stack
                .problems
                .push(format!("{origin}: {line:?}: needs a control and a module"));
            continue;
        }
        let control = match Control::parse(&fields[1]) {
            Ok(c) => c,
            Err(why) => {
                stack.problems.push(format!("{origin}: {why}"));
                continue;
            }
        };
        match control {
            Control::Include => {
                let target = include_path(pam_dir, &fields[2]);
                add_file(pam_dir, &target, &origin, chain, stack, (kind, depth + 1));
            }
            Control::Substack => {
                let first = stack.rules.len();
                add_file(
                    pam_dir,
                    &include_path(pam_dir, &fields[2]),
                    &origin,
                    chain,
                    stack,
                    (kind, depth + 1),
                );
                let end = stack.rules.len();
                for rule in &mut stack.rules[first..end] {
                    // The innermost substack decides where die and done continue.
                    rule.substack_end.get_or_insert(end);
                }
            }
            control => stack.rules.push(Rule {
                origin,
                text: fields.join(" "),
                kind: kind.to_string(),
                control,
                module: fields[2].clone(),
                args: fields[3..].to_vec(),
                substack_end: None,
            }),
        }
    }
    chain.pop();
}

/// `name` as libpam resolves an include: relative names are in the PAM directory.
fn include_path(pam_dir: &Path, name: &str) -> PathBuf {
    if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        pam_dir.join(name)
    }
}

/// Reads a service or included file. Refuses (with the reason) names that leave the PAM
/// directory (`../x`, an absolute path elsewhere), loops, and symlinks whose target is not a
/// regular file; a symlink to a regular file is followed, as libpam does.
fn read_within(pam_dir: &Path, file: &Path, chain: &[PathBuf]) -> Result<String, String> {
    if file.parent() != Some(pam_dir) {
        return Err(format!(
            "includes {}, outside {}: not followed",
            file.display(),
            pam_dir.display()
        ));
    }
    if chain.iter().any(|f| f == file) {
        return Err(format!(
            "{} includes itself (through {}): libpam fails the service",
            file.display(),
            chain
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" -> ")
        ));
    }
    let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", file.display()));
    }
    std::fs::read(file)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Modules that never fail in the auth stack (they only set things up or log); their
/// failure paths are not followed.
const NEVER_FAIL: &[&str] = &[
    "pam_permit.so",
    "pam_faildelay.so",
    "pam_env.so",
    "pam_cap.so",
    "pam_group.so",
    "pam_warn.so",
    "pam_echo.so",
];

/// Modules that restrict who may log in (shell, SELinux, user lists, time, wheel, root) but
/// check no password: their failure is followed but is not a wrong password reaching the
/// code.
pub const NOT_PASSWORD: &[&str] = &[
    "pam_shells.so",
    "pam_sepermit.so",
    "pam_listfile.so",
    "pam_nologin.so",
    "pam_securetty.so",
    "pam_access.so",
    "pam_succeed_if.so",
    "pam_rootok.so",
    "pam_wheel.so",
    "pam_localuser.so",
    "pam_time.so",
    "pam_faillock.so",
];

/// What a path to a target line found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Paths {
    /// Earlier lines that can fail while the stack still reaches the target (first failure
    /// of each such path), as indexes into the stack.
    pub failed_before: Vec<usize>,
    /// Lines whose success ends the stack (or jumps past the target) before it runs, with
    /// no failure on the way: the target can be skipped.
    pub skipped_by: Vec<usize>,
}

/// Follows every path from `start` through `rules` up to `target` (an index): each module
/// can succeed or fail (pam_deny only fails; [`NEVER_FAIL`] modules only succeed).
pub fn paths_to(rules: &[Rule], start: usize, target: usize) -> Paths {
    let mut paths = Paths::default();
    // (position, first failure on the path and whether it is sticky, last line run). A
    // failure whose action is `bad` (or `ok`) stays in the stack's result; one that is
    // ignored (`optional`, `sufficient`, `default=ignore`, a jump) is undone by a later real
    // check that succeeds: Debian's alternative password modules (pam_unix, then pam_sss).
    let mut todo = vec![(start, None::<(usize, bool)>, None::<usize>)];
    let mut seen = HashSet::new();
    while let Some(state) = todo.pop() {
        if !seen.insert(state) {
            continue;
        }
        let (pos, failed, last) = state;
        if pos == target {
            if let Some((f, _)) = failed {
                paths.failed_before.push(f);
            }
            continue;
        }
        if pos >= rules.len() || pos > target {
            // The end of the stack, or past the target: skipped if nothing failed.
            if let (None, Some(l)) = (failed, last) {
                paths.skipped_by.push(l);
            }
            continue;
        }
        let rule = &rules[pos];
        let name = rule.module_name();
        let never_fails = NEVER_FAIL.contains(&name);
        let outcomes: &[&str] = if name == "pam_deny.so" {
            &["auth_err"]
        } else if never_fails {
            &["success"]
        } else {
            &[
                "success",
                "auth_err",
                "user_unknown",
                "authinfo_unavail",
                "cred_insufficient",
            ]
        };
        for &value in outcomes {
            let action = rule.control.action(value);
            let failed = if value == "success" {
                match failed {
                    Some((_, false)) if !never_fails => None,
                    other => other,
                }
            } else if NOT_PASSWORD.contains(&name) {
                failed
            } else {
                let sticky = matches!(action, Action::Bad | Action::Ok | Action::Die);
                match failed {
                    None => Some((pos, sticky)),
                    Some((f, false)) if sticky => Some((f, true)),
                    other => other,
                }
            };
            let next = match action {
                Action::Ok | Action::Bad | Action::Ignore | Action::Reset => Some(pos + 1),
                Action::Jump(n) => Some(pos + 1 + n),
                Action::Die => rule.substack_end,
                Action::Done if value != "success" => rule.substack_end,
                Action::Done => match rule.substack_end {
                    Some(end) => Some(end),
                    None => {
                        if failed.is_none() {
                            paths.skipped_by.push(pos);
                        }
                        None
                    }
                },
            };
            if let Some(next) = next {
                todo.push((next, failed, Some(pos)));
            }
        }
    }
    paths.failed_before.sort_unstable();
    paths.failed_before.dedup();
    paths.skipped_by.sort_unstable();
    paths.skipped_by.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "twostep-pamstack-{}-{}",
            std::process::id(),
            files[0].0
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    fn stack_of(name: &str, text: &str) -> Vec<Rule> {
        let dir = dir_with(&[(name, text)]);
        let stack = auth_stack(&dir, name);
        assert!(stack.problems.is_empty(), "{:?}", stack.problems);
        stack.rules
    }

    #[test]
    fn comments_continuations_dashes_and_brackets() {
        let rules = stack_of(
            "svc-parse",
            "# a comment naming pam_twostep.so\n\
             -auth [success=1 \\\n   default=ignore] pam_unix.so nullok # trailing\n\
             auth\trequisite pam_deny.so\n\
             account required pam_unix.so\n\
             auth required /lib/pam_twostep.so config=/x [a b\\]c]\n",
        );
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].origin.line, 2);
        assert_eq!(rules[0].module, "pam_unix.so");
        assert_eq!(rules[0].args, ["nullok"]);
        assert_eq!(rules[0].control.action("success"), Action::Jump(1));
        assert_eq!(rules[0].control.action("auth_err"), Action::Ignore);
        assert_eq!(rules[2].module_name(), "pam_twostep.so");
        assert_eq!(rules[2].args, ["config=/x", "[a b]c]"]);
        assert_eq!(rules[2].origin.line, 6);
    }

    #[test]
    fn controls_as_libpam_reads_them() {
        let c = |t| Control::parse(t).unwrap();
        assert!(c("requisite").failure_ends_stack());
        assert!(c("[success=ok default=die]").failure_ends_stack());
        assert!(c("[success=ok new_authtok_reqd=ok default=die]").failure_ends_stack());
        assert!(!c("required").failure_ends_stack());
        assert!(
            !c("[success=ok]").failure_ends_stack(),
            "no default= means bad"
        );
        assert!(!c("[success=ok auth_err=die default=bad]").failure_ends_stack());
        assert!(!c("[default=die user_unknown=ignore]").failure_ends_stack());
        assert!(Control::parse("[success=sometimes]").is_err());
        assert!(Control::parse("mandatory").is_err());
    }

    #[test]
    fn includes_are_flattened_and_substacks_scoped() {
        let dir = dir_with(&[
            (
                "svc-inc",
                "@include common-x\nauth include other-x\nauth substack sub-x\nauth required pam_twostep.so\n",
            ),
            (
                "common-x",
                "auth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_permit.so\nsession required pam_env.so\n",
            ),
            (
                "other-x",
                "auth optional pam_cap.so\naccount required pam_unix.so\n",
            ),
            ("sub-x", "auth requisite pam_sss.so\n"),
        ]);
        let stack = auth_stack(&dir, "svc-inc");
        assert!(stack.problems.is_empty(), "{:?}", stack.problems);
        let names: Vec<&str> = stack.rules.iter().map(Rule::module_name).collect();
        assert_eq!(
            names,
            [
                "pam_unix.so",
                "pam_deny.so",
                "pam_permit.so",
                "pam_cap.so",
                "pam_sss.so",
                "pam_twostep.so"
            ]
        );
        assert_eq!(stack.rules[4].substack_end, Some(5));
        assert_eq!(stack.rules[0].origin.file, dir.join("common-x"));
        // common-auth's pam_deny stops a wrong password; the substack's requisite does not
        // end the service's stack.
        let paths = paths_to(&stack.rules, 0, 5);
        assert_eq!(paths.failed_before, [4]);
    }

    #[test]
    fn loops_escapes_and_depth_are_reported() {
        let dir = dir_with(&[(
            "svc-loop",
            "@include svc-loop\nauth include ../passwd\nauth include /etc/passwd\n@include missing-x\n",
        )]);
        let stack = auth_stack(&dir, "svc-loop");
        let all = stack.problems.join("\n");
        assert!(all.contains("includes itself"), "{all}");
        assert_eq!(
            stack
                .problems
                .iter()
                .filter(|p| p.contains("not followed"))
                .count(),
            2,
            "{all}"
        );
        assert!(all.contains("missing-x"), "{all}");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link-x")).unwrap();
        std::fs::write(dir.join("svc-link"), "@include link-x\n").unwrap();
        // A symlink to a regular file is followed (RHEL's authselect files are symlinks).
        assert!(auth_stack(&dir, "svc-link").problems.is_empty());
        let mut chain = String::new();
        for i in 0..20 {
            std::fs::write(
                dir.join(format!("deep-{i}")),
                format!("@include deep-{}\n", i + 1),
            )
            .unwrap();
            chain = format!("deep-{i}");
        }
        let _ = chain;
        let stack = auth_stack(&dir, "deep-0");
        assert!(
            stack.problems.iter().any(|p| p.contains("deeper than 16")),
            "{:?}",
            stack.problems
        );
    }

    fn check(text: &str) -> Paths {
        let rules = stack_of("svc-paths", text);
        let target = rules
            .iter()
            .position(|r| r.module_name() == "pam_twostep.so")
            .unwrap();
        paths_to(&rules, 0, target)
    }

    #[test]
    fn which_earlier_lines_can_fail_and_go_on() {
        let t = "auth required pam_twostep.so\n";
        for safe in [
            "auth requisite pam_unix.so\n",
            "auth [success=ok default=die] pam_unix.so\n",
            "auth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
            "auth [success=2 default=ignore] pam_unix.so\nauth [success=1 default=ignore] pam_sss.so\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth optional pam_cap.so\n",
            "auth optional pam_faildelay.so\nauth requisite pam_unix.so\n",
            // Debian's chsh, vsftpd and cockpit: restrictions, then common-auth.
            "auth required pam_shells.so\nauth required pam_listfile.so item=user\nauth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
            "auth optional pam_faildelay.so\nauth requisite pam_nologin.so\nauth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth optional pam_group.so\n",
        ] {
            assert_eq!(check(&format!("{safe}{t}")), Paths::default(), "{safe}");
        }
        for (unsafe_, failing) in [
            ("auth required pam_unix.so\n", 0),
            ("auth optional pam_unix.so\n", 0),
            ("auth [success=ok default=bad] pam_unix.so\n", 0),
            ("auth [success=ok auth_err=die] pam_unix.so\n", 0),
            (
                "auth [success=ok default=die user_unknown=ignore] pam_unix.so\n",
                0,
            ),
            (
                "auth [success=1 default=ignore] pam_unix.so\nauth required pam_permit.so\n",
                0,
            ),
            (
                "auth requisite pam_nologin.so\nauth required pam_unix.so\n",
                1,
            ),
            (
                "auth sufficient pam_unix.so\nauth required pam_permit.so\n",
                0,
            ),
            (
                "auth required pam_shells.so\nauth optional pam_unix.so\n",
                1,
            ),
        ] {
            let paths = check(&format!("{unsafe_}{t}"));
            assert_eq!(paths.failed_before, [failing], "{unsafe_}");
        }
        // sufficient: a wrong password goes on to the code, a right one skips it.
        let paths = check(&format!("auth sufficient pam_unix.so\n{t}"));
        assert_eq!(paths.failed_before, [0]);
        assert_eq!(paths.skipped_by, [0]);
        // A jump over the module skips it.
        let paths = check(&format!("auth [success=1 default=die] pam_unix.so\n{t}"));
        assert_eq!(paths.skipped_by, [0]);
        assert!(paths.failed_before.is_empty());
    }
}
