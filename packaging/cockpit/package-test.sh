#!/bin/bash
# The cockpit-twostep package test, run by packaging/ci-package-test.sh while the twostep .deb
# it built is installed: checks the .deb's and the .rpm's files, modes and dependencies, installs
# the .deb (the page's files appear where Cockpit reads them and cockpit-bridge lists the
# package; the page's read-only commands work with the installed CLI and config), then purges it
# (nothing left). An EXIT trap purges it whatever happened.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/packages
DIR=/usr/share/cockpit/twostep

fail() { printf 'cockpit package test: FAIL: %s\n' "$*" >&2; exit 1; }
status() { dpkg-query -W -f='${db:Status-Abbrev}' cockpit-twostep 2>/dev/null || true; }

shellcheck packaging/cockpit/build.sh packaging/cockpit/package-test.sh
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' twostep 2>/dev/null)" = "ii " ] ||
    fail "twostep must be installed first (packaging/ci-package-test.sh does)"
[ -z "$(status)" ] || fail "cockpit-twostep is already known to dpkg: $(status)"
[ ! -e "$DIR" ] || fail "$DIR exists before the install"
cleanup() {
    local rc=$?
    trap - EXIT
    [ -z "$(status)" ] || apt-get -o DPkg::Lock::Timeout=300 purge -y -qq cockpit-twostep >/dev/null
    exit "$rc"
}
trap cleanup EXIT

deb=$(ls "$OUT"/cockpit-twostep_*_all.deb)
rpm=$(ls "$OUT"/cockpit-twostep-*.noarch.rpm)
version=$(dpkg-query -W -f='${Version}' twostep)
files=(index.html manifest.json twostep.css twostep.js self.js)

# --- the .deb ---
expected=$(
    printf 'drwxr-xr-x root/root %s\n' ./ ./usr/ ./usr/share/ ./usr/share/cockpit/ \
        ./usr/share/cockpit/twostep/ ./usr/share/doc/ ./usr/share/doc/cockpit-twostep/
    for f in "${files[@]}"; do printf -- '-rw-r--r-- root/root ./usr/share/cockpit/twostep/%s\n' "$f"; done
    printf -- '-rw-r--r-- root/root ./usr/share/doc/cockpit-twostep/copyright\n'
)
actual=$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}')
[ "$(sort <<<"$actual")" = "$(sort <<<"$expected")" ] ||
    fail "the .deb's files:
$(diff <(sort <<<"$expected") <(sort <<<"$actual"))"
[ "$(dpkg-deb -f "$deb" Architecture)" = all ] || fail "the .deb is not Architecture: all"
[ "$(dpkg-deb -f "$deb" Depends)" = "twostep (= $version), cockpit-system (>= 287)" ] ||
    fail "the .deb's Depends: $(dpkg-deb -f "$deb" Depends)"
for f in "${files[@]}"; do
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/share/cockpit/twostep/$f" | cmp -s - "cockpit/$f" ||
        fail "$f in the .deb differs from cockpit/$f"
done

# --- the .rpm ---
rpm_files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm")
rpm_expected=$(
    printf 'drwxr-xr-x root:root /usr/share/cockpit/twostep\n'
    for f in "${files[@]}"; do printf -- '-rw-r--r-- root:root /usr/share/cockpit/twostep/%s\n' "$f"; done
    printf -- '-rw-r--r-- root:root /usr/share/licenses/cockpit-twostep/copyright\n'
)
[ "$(sort <<<"$rpm_files")" = "$(sort <<<"$rpm_expected")" ] ||
    fail "the .rpm's files:
$(diff <(sort <<<"$rpm_expected") <(sort <<<"$rpm_files"))"
requires=$(rpm -qp --requires "$rpm" | grep -v '^rpmlib(' | sort)
[ "$requires" = "$(printf 'cockpit-system >= 287\ntwostep = %s' "$version")" ] ||
    fail "the .rpm's Requires: $requires"
[ "$(rpm -qp --qf '%{ARCH}' "$rpm")" = noarch ] || fail "the .rpm is not noarch"

# --- install, use, purge ---
apt-get -o DPkg::Lock::Timeout=300 install -y -qq "./$deb" >/dev/null || fail "apt-get install ./$deb failed"
[ "$(status)" = "ii " ] || fail "cockpit-twostep is not installed: $(status)"
for f in "${files[@]}"; do
    cmp -s "$DIR/$f" "cockpit/$f" || fail "$DIR/$f is not cockpit/$f"
done
# Outputs are captured before grep -q reads them: grep stops at the first match, and with
# pipefail the writer's SIGPIPE would fail the pipeline.
packages=$(cockpit-bridge --packages)
grep -qE '^twostep[[:space:]]' <<<"$packages" ||
    fail "cockpit-bridge does not list the package: $packages"
# What the page runs first, against the installed CLI and the packaged config.
config=$(twostep config get --json) ||
    fail "twostep config get --json failed with the installed config"
grep -q '"path": "/etc/twostep/twostep.toml"' <<<"$config" ||
    fail "twostep config get --json does not describe the installed config: $config"
users=$(twostep status --all --json) || fail "twostep status --all --json failed"
grep -q '"user": "root"' <<<"$users" || fail "twostep status --all --json lists no root: $users"
apt-get -o DPkg::Lock::Timeout=300 purge -y -qq cockpit-twostep >/dev/null || fail "apt-get purge failed"
[ -z "$(status)" ] || fail "cockpit-twostep is still known to dpkg: $(status)"
[ ! -e "$DIR" ] || fail "$DIR is left after the purge"
echo "cockpit package test: ok ($deb, $rpm)"
