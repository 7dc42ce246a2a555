//! The two smb.conf settings the SMB gate depends on (docs/smb.md): `obey pam restrictions`
//! (without it smbd never runs the PAM account stack for SMB sessions) and `hostname lookups`
//! (with it, PAM_RHOST is the client's host name rather than its address).

use std::path::Path;

pub const DEFAULT_SMB_CONF: &str = "/etc/samba/smb.conf";
/// smb.conf files are small; a larger one is not read.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// What [global] says, with Samba's defaults for what it does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub obey_pam_restrictions: bool,
    pub hostname_lookups: bool,
    /// `include` and `config file` lines, which this reader does not follow.
    pub includes: Vec<String>,
}

/// Samba compares parameter names without case, spaces or underscores.
fn key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Samba's booleans: yes/no, true/false, 1/0, on/off.
fn boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// Reads [global] from smb.conf text. Lines continue with a trailing backslash; `;` and `#`
/// start comments; a later setting wins, as in Samba.
pub fn parse(text: &str) -> Global {
    let mut global = Global {
        obey_pam_restrictions: false,
        hostname_lookups: false,
        includes: Vec::new(),
    };
    let mut in_global = true;
    let mut pending = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            let name = section.split(']').next().unwrap_or_default();
            in_global = key(name) == "global";
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if !in_global {
            continue;
        }
        match key(name).as_str() {
            "obeypamrestrictions" => {
                if let Some(b) = boolean(value) {
                    global.obey_pam_restrictions = b;
                }
            }
            "hostnamelookups" => {
                if let Some(b) = boolean(value) {
                    global.hostname_lookups = b;
                }
            }
            "include" | "configfile" => global.includes.push(value.trim().to_string()),
            _ => {}
        }
    }
    global
}

/// Reads and parses `path`.
pub fn read(path: &Path) -> Result<Global, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{} is larger than {MAX_BYTES} bytes",
            path.display()
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_global_only_with_samba_spelling_rules() {
        let g = parse(
            "[global]\n  Obey PAM Restrictions = Yes\n; obey pam restrictions = no\n\
             [share]\nobey pam restrictions = no\nhostname lookups = yes\n",
        );
        assert!(g.obey_pam_restrictions);
        assert!(!g.hostname_lookups);
        let g = parse("obey_pam_restrictions = true\nhostname \\\n lookups = on\n");
        assert!(g.obey_pam_restrictions && g.hostname_lookups);
        let g = parse("[global]\nobey pam restrictions = yes\nobey pam restrictions = no\n");
        assert!(!g.obey_pam_restrictions);
        let g = parse("[global]\ninclude = /etc/samba/%m.conf\n");
        assert_eq!(g.includes, ["/etc/samba/%m.conf"]);
        assert!(!parse("").obey_pam_restrictions);
    }
}
