#!/bin/bash
# Package test, run by .ci/run after `cargo test --workspace` (as root, on Debian 12 x86_64):
#
#  1. builds the .deb and the .rpm (packaging/build-packages.sh) and lints the scripts; builds
#     them again and checks that the bytes are the same (reproducible);
#  2. installs with packaging/install.sh, checks man pages and completions, that --uninstall is
#     refused while a PAM file loads the module, that it keeps the state, and that --purge
#     archives it to /var/backups first;
#  3. checks the .deb's files, modes, conffiles, Description, Depends, Recommends and
#     maintainer scripts, and the .rpm's file list, owned directories, config and license
#     flags, URL, description, Requires and scriptlets (running its %preun for real); runs
#     lintian and rpmlint and fails on any tag not explained in packaging/README.md;
#  3. installs the .deb with apt-get: the state directory appears, PAM files do not change; the
#     self-service files (PAM service twostep-self, the systemd units, verified with
#     systemd-analyze) are there with their modes and the socket is enabled;
#  4. enables it with `pam-auth-update --enable twostep` and runs, against the INSTALLED module
#     and CLI, tests/tests/pam_core.rs and tests/tests/packages.rs (logins through the real
#     common-auth with two throwaway local users and real passwords);
#  5. checks that removal is refused while a service file names the module by hand, that the
#     refusal is the last thing before apt's summary, and that its commands work;
#  6. removes the package: /etc/pam.d/common-* and /var/lib/pam are byte-identical to before,
#     the enrollment is still there and survives a reinstall; then purges: the state is
#     archived to /var/backups/twostep-<date>.tar (root, 0600) and restoring it as
#     docs/recovery.md says brings the enrollment back; everything else is gone.
#
# It refuses to run on a machine where twostep is installed (as a package or by install.sh), and
# restores what it changes even when a step fails: the package is purged, the users deleted,
# the PAM files put back.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

MODULE=/usr/lib/x86_64-linux-gnu/security/pam_twostep.so
CLI=/usr/sbin/twostep
PROFILE=/usr/share/pam-configs/twostep
SELF_PAM=/etc/pam.d/twostep-self
SELF_UNITS="twostep-self.socket twostep-self.service"
SOCKET_WANTS=/etc/systemd/system/sockets.target.wants/twostep-self.socket
STORE_UNITS="twostep-store.socket twostep-store.service"
STORE_WANTS=/etc/systemd/system/sockets.target.wants/twostep-store.socket
MANUAL_SERVICE=/etc/pam.d/twostep-pkgtest-manual
USER_A=twostep-pkgtest-a   # enrolled by tests/tests/packages.rs
USER_B=twostep-pkgtest-b   # never enrolled
USER_MARK="twostep package test (packaging/ci-package-test.sh)"
OUT=target/packages

step() { printf '\n=== ci-package-test [%3ds] %s\n' "$SECONDS" "$*"; }
fail() { printf 'ci-package-test: FAIL: %s\n' "$*" >&2; exit 1; }
pkg_status() { dpkg-query -W -f='${db:Status-Abbrev}' twostep 2>/dev/null || true; }
pam_files() { ls /etc/pam.d/common-* /var/lib/pam/*; }
# The self-service's installed files: owner, mode and content ($1: the unit directory).
check_self_files() {
    local dir=$1 unit
    [ "$(stat -c '%U:%G %a' "$SELF_PAM")" = "root:root 644" ] || fail "$SELF_PAM: $(stat -c '%U:%G %a' "$SELF_PAM")"
    cmp packaging/pam.d/twostep-self "$SELF_PAM" || fail "$SELF_PAM is not packaging/pam.d/twostep-self"
    for unit in $SELF_UNITS; do
        [ "$(stat -c '%U:%G %a' "$dir/$unit")" = "root:root 644" ] || fail "$dir/$unit: $(stat -c '%U:%G %a' "$dir/$unit")"
        cmp "packaging/systemd/$unit" "$dir/$unit" || fail "$dir/$unit is not packaging/systemd/$unit"
    done
    # Enabled: sockets.target wants the socket (made by systemctl or deb-systemd-helper, with or
    # without a running systemd).
    [ "$(readlink "$SOCKET_WANTS")" = "$dir/twostep-self.socket" ] ||
        fail "twostep-self.socket is not enabled: $SOCKET_WANTS -> $(readlink "$SOCKET_WANTS")"
    # systemd's own check of the units, where its tools are installed (Debian's systemd package
    # has systemd-analyze; it needs no running systemd).
    if command -v systemd-analyze >/dev/null 2>&1; then
        systemd-analyze verify --man=no "$dir/twostep-self.socket" "$dir/twostep-self.service" ||
            fail "systemd-analyze verify rejects the self-service units"
    fi
}
# The fleet store's installed units ($1: the unit directory): owner, mode and content, the
# installed binary as ExecStart, the socket root's only, and NOT enabled (the default backend
# is the file store; docs/fleet.md has the admin enable it).
check_store_files() {
    local dir=$1 unit
    for unit in $STORE_UNITS; do
        [ "$(stat -c '%U:%G %a' "$dir/$unit")" = "root:root 644" ] || fail "$dir/$unit: $(stat -c '%U:%G %a' "$dir/$unit")"
        cmp "packaging/systemd/$unit" "$dir/$unit" || fail "$dir/$unit is not packaging/systemd/$unit"
    done
    [ "$(grep '^ExecStart=' "$dir/twostep-store.service")" = "ExecStart=$CLI serve-store" ] ||
        fail "twostep-store.service: $(grep '^ExecStart' "$dir/twostep-store.service")"
    [ -x "$CLI" ] || fail "twostep-store.service's ExecStart $CLI is not installed"
    grep -qx 'ListenStream=/run/twostep/store.sock' "$dir/twostep-store.socket" ||
        fail "twostep-store.socket does not listen on /run/twostep/store.sock"
    grep -qx 'SocketMode=0600' "$dir/twostep-store.socket" || fail "twostep-store.socket is not mode 0600"
    if [ -e "$STORE_WANTS" ] || [ -L "$STORE_WANTS" ]; then
        fail "twostep-store.socket is enabled by the installation: $STORE_WANTS"
    fi
    if command -v systemd-analyze >/dev/null 2>&1; then
        systemd-analyze verify --man=no "$dir/twostep-store.socket" "$dir/twostep-store.service" ||
            fail "systemd-analyze verify rejects the fleet store units"
    fi
}

[ "$(id -u)" -eq 0 ] || fail "run as root"

# --- preconditions: never touch a real installation ----------------------------------------
INSTALL_MANIFEST=/usr/share/twostep/installed-files   # written by packaging/install.sh
for path in "$MODULE" "$CLI" "$PROFILE" /etc/twostep /var/lib/twostep /usr/local/sbin/twostep \
            "$MANUAL_SERVICE" "$INSTALL_MANIFEST" /usr/share/man/man8/twostep.8.gz "$SELF_PAM" \
            /lib/systemd/system/twostep-self.socket /usr/local/lib/systemd/system/twostep-self.socket \
            "$SOCKET_WANTS" /etc/systemd/system/twostep-self.socket \
            /lib/systemd/system/twostep-store.socket /usr/local/lib/systemd/system/twostep-store.socket \
            "$STORE_WANTS"; do
    [ ! -e "$path" ] || fail "$path exists: twostep seems installed here; remove it first \
(apt-get purge twostep, or undo packaging/install.sh) - this test installs and purges the package"
done
[ -z "$(pkg_status)" ] || fail "package twostep is known to dpkg ($(pkg_status)); apt-get purge twostep first"
for user in "$USER_A" "$USER_B"; do
    if getent passwd "$user" >/dev/null; then
        # Left by an interrupted run (the mark says so): delete it; anything else: refuse.
        [ "$(getent passwd "$user" | cut -d: -f5)" = "$USER_MARK" ] ||
            fail "user $user exists and is not a leftover of this test"
        userdel "$user"
    fi
done

# --- snapshot and cleanup -------------------------------------------------------------------
backup=$(mktemp -d /tmp/twostep-pkgtest.XXXXXX)
mkdir "$backup/pam.d" "$backup/varlibpam"
cp -a /etc/pam.d/common-* "$backup/pam.d/"
cp -a /var/lib/pam/. "$backup/varlibpam/"
pam_files | sort >"$backup/files"
# The purge archives this test makes are deleted at the end; older ones are never touched.
archives() { find /var/backups -maxdepth 1 -name 'twostep-*.tar' 2>/dev/null | sort; }
archives >"$backup/archives-before"
new_archives() { comm -13 "$backup/archives-before" <(archives); }
# pam-auth-update also keeps the enabled profiles in debconf.
profiles_before=$(echo "get libpam-runtime/profiles" | debconf-communicate libpam-runtime | cut -c3-)
profiles_seen_before=$(echo "fget libpam-runtime/profiles seen" | debconf-communicate libpam-runtime | cut -c3-)

# Compares the PAM files with the snapshot; prints differences, returns non-zero if any. With
# --seen-twostep, /var/lib/pam/seen (pam-auth-update's list of profiles it has offered) must be
# the old one plus the line "twostep": that is how a "Default: no" profile is remembered.
pam_unchanged() {
    local ok=0 f
    if ! diff -u "$backup/files" <(pam_files | sort) >&2; then ok=1; fi
    for f in "$backup"/pam.d/* "$backup"/varlibpam/*; do
        case $f in
            */pam.d/*) cmp "$f" "/etc/pam.d/${f##*/}" >&2 || ok=1 ;;
            */seen) if [ "${1:-}" = --seen-twostep ]; then
                        diff -u "$f" <(grep -vx twostep /var/lib/pam/seen) >&2 || ok=1
                        grep -qx twostep /var/lib/pam/seen || ok=1
                    else
                        cmp "$f" /var/lib/pam/seen >&2 || ok=1
                    fi ;;
            *) cmp "$f" "/var/lib/pam/${f##*/}" >&2 || ok=1 ;;
        esac
    done
    return $ok
}

restore_pam() {
    cp -a "$backup"/pam.d/. /etc/pam.d/
    cp -a "$backup"/varlibpam/. /var/lib/pam/
}

cleanup() {
    local status=$?
    set +e
    trap - EXIT
    echo "--- ci-package-test: cleaning up (exit status $status)"
    rm -f "$MANUAL_SERVICE" "$MANUAL_SERVICE.twostep-bak"
    if [ -f "$INSTALL_MANIFEST" ]; then
        echo "cleanup: packaging/install.sh --uninstall --purge"
        bash packaging/install.sh --uninstall --purge >/dev/null
    fi
    if [ -n "$(pkg_status)" ]; then
        # Put the PAM files back first, so that the package's prerm (which refuses while a PAM
        # file loads the module) lets it go even after a failed step.
        restore_pam
        if ! apt-get -o DPkg::Lock::Timeout=300 purge -y -qq twostep >/dev/null 2>&1; then
            echo "cleanup: apt-get purge twostep failed; purging with a no-op prerm"
            printf '#!/bin/sh\nexit 0\n' >/var/lib/dpkg/info/twostep.prerm
            dpkg --purge twostep
        fi
    fi
    for user in "$USER_A" "$USER_B"; do
        getent passwd "$user" >/dev/null && userdel "$user"
    done
    if ! pam_unchanged 2>/dev/null; then
        echo "cleanup: restoring /etc/pam.d/common-* and /var/lib/pam from the snapshot"
        restore_pam
        [ "$status" -ne 0 ] || status=1
    fi
    if [ "$(echo "get libpam-runtime/profiles" | debconf-communicate libpam-runtime | cut -c3-)" \
         != "$profiles_before" ]; then
        echo "cleanup: restoring debconf libpam-runtime/profiles: $profiles_before"
        echo "set libpam-runtime/profiles $profiles_before" | debconf-communicate libpam-runtime >/dev/null
        [ "$status" -ne 0 ] || status=1
    fi
    # Not a finding: pam-auth-update sets this flag itself; put it back for the next run.
    echo "fset libpam-runtime/profiles seen $profiles_seen_before" |
        debconf-communicate libpam-runtime >/dev/null
    new_archives | xargs -r rm -f
    rm -rf "$backup" /var/lib/twostep /etc/twostep
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # run the cleanup on Ctrl-C and kill too

# --- build ------------------------------------------------------------------------------------
step "tools"
missing=()
for p in rpm shellcheck dpkg-dev oathtool libpam0g-dev lintian rpmlint man-db; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "shellcheck"
shellcheck packaging/build-packages.sh packaging/ci-package-test.sh packaging/install.sh
shellcheck -s sh packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
    packaging/rpm/preun.sh

step "build packages"
build_start=$SECONDS
bash packaging/build-packages.sh --install-deps
echo "packages built in $((SECONDS - build_start)) s"
deb=$(ls "$OUT"/twostep_*_amd64.deb)
rpm=$(ls "$OUT"/twostep-*.x86_64.rpm)
step "reproducible: the same tree builds the same bytes"
cp "$deb" "$rpm" "$backup/"
bash packaging/build-packages.sh >/dev/null 2>&1 || fail "the second build failed"
cmp "$deb" "$backup/${deb##*/}" || fail "the .deb differs between two builds of the same tree"
cmp "$rpm" "$backup/${rpm##*/}" || fail "the .rpm differs between two builds of the same tree"

# --- packaging/install.sh ---------------------------------------------------------------------
step "install.sh: install, refused uninstall, uninstall, purge"
bash packaging/install.sh >"$backup/install.log" 2>&1 || { cat "$backup/install.log"; fail "install.sh failed"; }
[ -s "$INSTALL_MANIFEST" ] || fail "install.sh wrote no $INSTALL_MANIFEST"
for path in "$MODULE" "$CLI" /usr/share/man/man8/twostep.8.gz /usr/share/man/man8/twostep-enroll.8.gz \
            /usr/share/man/man8/pam_twostep.8.gz /usr/share/man/man5/twostep.toml.5.gz \
            /usr/share/bash-completion/completions/twostep /usr/share/zsh/vendor-completions/_twostep \
            /usr/share/fish/vendor_completions.d/twostep.fish /etc/twostep/twostep.toml; do
    [ -f "$path" ] || fail "install.sh did not install $path"
    grep -qxF "$path" "$INSTALL_MANIFEST" || [ "$path" = /etc/twostep/twostep.toml ] ||
        fail "$path is not in $INSTALL_MANIFEST"
done
[ "$(man -w twostep)" = /usr/share/man/man8/twostep.8.gz ] || fail "man -w twostep: $(man -w twostep 2>&1)"
for path in "$SELF_PAM" /usr/local/lib/systemd/system/twostep-self.socket /usr/local/lib/systemd/system/twostep-self.service; do
    grep -qxF "$path" "$INSTALL_MANIFEST" || fail "$path is not in $INSTALL_MANIFEST"
done
check_self_files /usr/local/lib/systemd/system
for unit in $STORE_UNITS; do
    grep -qxF "/usr/local/lib/systemd/system/$unit" "$INSTALL_MANIFEST" || fail "$unit is not in $INSTALL_MANIFEST"
done
check_store_files /usr/local/lib/systemd/system
[ "$(stat -c '%U %a' /var/lib/twostep)" = "root 700" ] || fail "install.sh: /var/lib/twostep mode"
"$CLI" enroll daemon --secret JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP --yes >/dev/null || fail "enroll after install.sh"
printf 'auth requisite pam_unix.so\nauth required pam_twostep.so\n' >"$MANUAL_SERVICE"
if bash packaging/install.sh --uninstall >"$backup/uninstall.log" 2>&1; then
    fail "install.sh --uninstall went ahead although $MANUAL_SERVICE loads the module"
fi
grep -qF "$MANUAL_SERVICE:2:" "$backup/uninstall.log" || fail "the refusal does not name the line: $(cat "$backup/uninstall.log")"
grep -qF "sed -i.twostep-bak '/^[^#]*pam_twostep\.so/d' $MANUAL_SERVICE" "$backup/uninstall.log" ||
    fail "the refusal does not give the command: $(cat "$backup/uninstall.log")"
[ -f "$MODULE" ] || fail "a refused --uninstall deleted the module"
rm "$MANUAL_SERVICE"
bash packaging/install.sh --uninstall >"$backup/uninstall.log" 2>&1 || fail "install.sh --uninstall: $(cat "$backup/uninstall.log")"
for path in "$MODULE" "$CLI" /usr/share/man/man8/twostep.8.gz "$INSTALL_MANIFEST" "$SELF_PAM" \
            /usr/local/lib/systemd/system/twostep-self.socket /usr/local/lib/systemd/system/twostep-self.service \
            /usr/local/lib/systemd/system/twostep-store.socket /usr/local/lib/systemd/system/twostep-store.service; do
    [ ! -e "$path" ] || fail "install.sh --uninstall left $path"
done
[ ! -L "$SOCKET_WANTS" ] || fail "install.sh --uninstall left twostep-self.socket enabled"
[ -f /var/lib/twostep/users/daemon.toml ] || fail "install.sh --uninstall deleted the enrollment"
[ -f /etc/twostep/twostep.toml ] || fail "install.sh --uninstall deleted the config"
bash packaging/install.sh >/dev/null 2>&1 || fail "install.sh (again) failed"
bash packaging/install.sh --uninstall --purge >"$backup/purge.log" 2>&1 || fail "install.sh --uninstall --purge: $(cat "$backup/purge.log")"
if [ -e /var/lib/twostep ] || [ -e /etc/twostep ]; then fail "install.sh --purge left the state or config"; fi
archive=$(new_archives)
if [ -z "$archive" ] || [ "$(wc -l <<<"$archive")" != 1 ]; then fail "install.sh --purge made no single archive: $archive"; fi
grep -qF "$archive" "$backup/purge.log" || fail "install.sh --purge did not say where the archive is"
[ "$(stat -c '%U:%G %a' "$archive")" = "root:root 600" ] || fail "$archive: $(stat -c '%U:%G %a' "$archive")"
tar -tf "$archive" >"$backup/archive-list"
grep -qx 'var/lib/twostep/users/daemon.toml' "$backup/archive-list" || fail "$archive lacks the enrollment"
rm "$archive"

# The files both packages must hold, from the source tree: $1 is "deb" or "rpm".
expected_files() {
    local f
    echo "/etc/twostep/twostep.toml"
    echo "$SELF_PAM"
    echo "/usr/sbin/twostep"
    echo "/usr/share/bash-completion/completions/twostep"
    echo "/usr/share/fish/vendor_completions.d/twostep.fish"
    echo "/usr/share/doc/twostep/README.md"
    for f in docs/*.md; do echo "/usr/share/doc/twostep/${f#docs/}"; done
    for f in "$OUT"/gen/man/twostep*.8.gz; do echo "/usr/share/man/man8/${f##*/}"; done
    echo "/usr/share/man/man5/twostep.toml.5.gz"
    echo "/usr/share/man/man8/pam_twostep.8.gz"
    if [ "$1" = deb ]; then
        echo "$MODULE"
        echo "$PROFILE"
        echo "/usr/bin/twostep"
        echo "/usr/share/zsh/vendor-completions/_twostep"
        echo "/usr/share/doc/twostep/copyright"
        echo "/usr/share/doc/twostep/changelog.Debian.gz"
        echo "/lib/systemd/system/twostep-self.socket"
        echo "/lib/systemd/system/twostep-self.service"
        echo "/lib/systemd/system/twostep-store.socket"
        echo "/lib/systemd/system/twostep-store.service"
    else
        echo "/usr/lib64/security/pam_twostep.so"
        echo "/usr/share/zsh/site-functions/_twostep"
        echo "/usr/share/licenses/twostep/copyright"
        echo "/usr/lib/systemd/system/twostep-self.socket"
        echo "/usr/lib/systemd/system/twostep-self.service"
        echo "/usr/lib/systemd/system/twostep-store.socket"
        echo "/usr/lib/systemd/system/twostep-store.service"
        echo "/usr/lib/systemd/system-preset/80-twostep.preset"
        # The directories the .rpm owns.
        echo "/etc/twostep"
        echo "/usr/share/doc/twostep"
        echo "/usr/share/licenses/twostep"
        echo "/var/lib/twostep"
    fi
}

step "check the .deb ($(stat -c %s "$deb") bytes)"
for page in twostep.8.gz twostep-enroll.8.gz; do
    [ -e "$OUT/gen/man/$page" ] || fail "generated man page $page missing"
done
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $1, $2, $6 }' | sort -k3 \
    >"$backup/deb-contents"
diff -u <(expected_files deb | sort) <(awk '{print $3}' "$backup/deb-contents") ||
    fail "the .deb's file list differs from the expected one (- expected, + found)"
grep -vE '^-rw-r--r-- 0/0 |^-rwxr-xr-x 0/0 /usr/sbin/twostep$|^lrwxrwxrwx 0/0 /usr/bin/twostep$' \
    "$backup/deb-contents" && fail "files with unexpected owner or mode (above)"
grep -qx -- "-rw-r--r-- 0/0 $MODULE" "$backup/deb-contents" || fail "module mode"
dpkg-deb -x "$deb" "$backup/deb-root"
dpkg-deb -e "$deb" "$backup/deb-control"
[ "$(sort "$backup/deb-control/conffiles")" = "$(printf '%s\n' "$SELF_PAM" /etc/twostep/twostep.toml)" ] ||
    fail "conffiles must be exactly /etc/twostep/twostep.toml and $SELF_PAM: $(cat "$backup/deb-control/conffiles")"
for script in postinst prerm postrm; do
    cmp "packaging/debian/$script" "$backup/deb-control/$script" ||
        fail "the packaged $script differs from packaging/debian/$script"
    [ -x "$backup/deb-control/$script" ] || fail "$script is not executable"
done
[ ! -e "$backup/deb-control/preinst" ] || fail "unexpected preinst"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in libc6 libpam0g libpam-runtime; do
    [[ ", $depends," == *", $dep "* ]] || fail "Depends lacks $dep: $depends"
done
[ "$(dpkg-deb -f "$deb" Package)" = twostep ] || fail "package name"
[[ ", $(dpkg-deb -f "$deb" Recommends)," == *", bash-completion,"* ]] || fail "Recommends lacks bash-completion"
# One short synopsis line, then the long description (not a cut sentence).
description=$(dpkg-deb -f "$deb" Description)
synopsis=$(head -n 1 <<<"$description")
if [ "$synopsis" != "$(sed -n 's/^description = "\(.*\)"$/\1/p' twostep-cli/Cargo.toml)" ] ||
    [ ${#synopsis} -gt 80 ]; then fail "Description synopsis: $synopsis"; fi
[ "$(wc -l <<<"$description")" -ge 4 ] || fail "no long description"
zcat "$backup/deb-root/usr/share/man/man8/twostep.8.gz" >"$backup/twostep.8"
grep -q '^\.TH twostep 8' "$backup/twostep.8" ||
    fail "twostep's man page is not in section 8"
cmp packaging/pam-configs/twostep "$backup/deb-root$PROFILE" || fail "pam-auth-update profile"
cmp packaging/twostep.toml "$backup/deb-root/etc/twostep/twostep.toml" || fail "default config"
for page in "$backup"/deb-root/usr/share/man/man*/*.gz; do
    zcat "$page" >"$backup/page" || fail "$page is not gzipped"
    grep -q '^\.TH' "$backup/page" || fail "$page is not a man page"
done
# The stripped module still exports the PAM entry points.
# (No `| grep -q` in this script: with pipefail, grep quitting early can fail the writer.)
nm -D --defined-only "$backup/deb-root$MODULE" >"$backup/module-symbols"
for symbol in pam_sm_authenticate pam_sm_setcred; do
    grep -qw "$symbol" "$backup/module-symbols" ||
        fail "the packaged module does not export $symbol"
done

step "check the .rpm ($(stat -c %s "$rpm") bytes)"
diff -u <(expected_files rpm | sort) <(rpm -qlp "$rpm" | sort) ||
    fail "the .rpm's file list differs from the expected one (- expected, + found)"
[ "$(rpm -qp --configfiles "$rpm" | sort)" = "$(printf '%s\n' "$SELF_PAM" /etc/twostep/twostep.toml)" ] || fail "rpm config files"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" >"$backup/rpm-flags"
grep -qx 'cn /etc/twostep/twostep.toml' "$backup/rpm-flags" ||
    fail "twostep.toml must be %config(noreplace)"
grep -qx "cn $SELF_PAM" "$backup/rpm-flags" || fail "$SELF_PAM must be %config(noreplace)"
grep -qx 'l /usr/share/licenses/twostep/copyright' "$backup/rpm-flags" || fail "copyright must be %license"
[ "$(rpm -qp --qf '%{URL}' "$rpm")" = "$(sed -n 's/^repository = "\(.*\)"$/\1/p' Cargo.toml)" ] || fail "rpm URL"
[ "$(rpm -qp --qf '%{DESCRIPTION}' "$rpm" | wc -l)" -ge 4 ] || fail "rpm has no real description"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" \
    >"$backup/rpm-modes"
grep -vE '^-rw-r--r-- root:root |^-rwxr-xr-x root:root /usr/(sbin/twostep|lib64/security/pam_twostep\.so)$|^drwxr-xr-x root:root /(etc/twostep|usr/share/doc/twostep|usr/share/licenses/twostep)$|^drwx------ root:root /var/lib/twostep$' \
    "$backup/rpm-modes" &&
    fail "rpm files with unexpected owner or mode (above)"
requires=$(rpm -qp --requires "$rpm")
for dep in pam 'libpam.so.0()(64bit)' /bin/sh; do
    grep -qxF "$dep" <<<"$requires" || fail "rpm Requires lacks $dep"
done
rpm -qp --qf '%{PREUN}\n' "$rpm" >"$backup/rpm-preun"
diff -u packaging/rpm/preun.sh "$backup/rpm-preun" || fail "rpm %preun is not packaging/rpm/preun.sh"
# %post and %postun only manage the self-service socket (the package owns /var/lib/twostep
# (0700), so rpm creates it); they do nothing without a running systemd.
for tag in PREIN PRETRANS POSTTRANS; do
    [ "$(rpm -qp --qf "%{$tag}" "$rpm")" = "(none)" ] || fail "unexpected rpm %$tag scriptlet"
done
grep -qF 'systemctl --no-reload preset twostep-self.socket' <<<"$(rpm -qp --qf '%{POSTIN}' "$rpm")" ||
    fail "rpm %post does not preset twostep-self.socket: $(rpm -qp --qf '%{POSTIN}' "$rpm")"
grep -qF 'systemctl try-restart twostep-self.socket' <<<"$(rpm -qp --qf '%{POSTUN}' "$rpm")" ||
    fail "rpm %postun does not restart twostep-self.socket: $(rpm -qp --qf '%{POSTUN}' "$rpm")"
rpm2cpio "$rpm" | (cd "$backup" && cpio -id --quiet ./usr/lib/systemd/system-preset/80-twostep.preset)
grep -qx 'enable twostep-self.socket' "$backup/usr/lib/systemd/system-preset/80-twostep.preset" ||
    fail "the rpm's preset does not enable twostep-self.socket"
grep -F twostep-store "$backup/usr/lib/systemd/system-preset/80-twostep.preset" &&
    fail "the rpm's preset names the fleet store (above): it must stay disabled"
rpm2cpio "$rpm" | (cd "$backup" && cpio -id --quiet ./usr/lib/systemd/system/twostep-store.service)
[ "$(grep '^ExecStart=' "$backup/usr/lib/systemd/system/twostep-store.service")" = "ExecStart=$CLI serve-store" ] ||
    fail "the rpm's twostep-store.service does not start $CLI serve-store"
grep -qF 'twostep-store.service' "$backup/rpm-preun" || fail "rpm %preun does not stop twostep-store.service"
# %preun refuses an erase while a PAM file loads the module, allows upgrades and clean erases.
printf '# a comment naming pam_twostep.so is not a use\nauth required pam_unix.so\n' >"$MANUAL_SERVICE"
sh "$backup/rpm-preun" 0 || fail "rpm %preun refused an erase with only a comment naming the module"
printf 'auth required pam_unix.so\nauth  required  pam_twostep.so\n' >"$MANUAL_SERVICE"
if sh "$backup/rpm-preun" 0 2>"$backup/preun.err"; then fail "rpm %preun allowed an erase while $MANUAL_SERVICE loads the module"; fi
grep -q "$MANUAL_SERVICE:2:" "$backup/preun.err" || fail "rpm %preun did not name the line"
sh "$backup/rpm-preun" 1 || fail "rpm %preun refused an upgrade"
rm "$MANUAL_SERVICE"

step "lintian and rpmlint: only the tags packaging/README.md explains"
# Each tag allowed here has its reason in packaging/README.md ("lintian and rpmlint").
lintian -EvIL +pedantic --tag-display-limit 0 "$deb" >"$backup/lintian.log" 2>&1 || true
grep -E '^[EWIXP]: ' "$backup/lintian.log" |
    grep -vE '^W: twostep: initial-upload-closes-no-bugs( |$)|^I: twostep: (hardening-no-fortify-functions|no-md5sums-control-file|spare-manual-page|spelling-error-in-binary usera users|package-supports-alternative-init-but-no-init\.d-script \[lib/systemd/system/twostep-(self|store)\.service\]|systemd-service-file-missing-install-key \[lib/systemd/system/twostep-(self|store)\.service\])( |$)' &&
    fail "lintian reports tags not explained in packaging/README.md (above)"
rpmlint "$rpm" >"$backup/rpmlint.log" 2>&1 || true
grep -E '^twostep\.x86_64: [EW]: ' "$backup/rpmlint.log" |
    grep -vE ': E: (non-standard-dir-perm /var/lib/twostep 700|no-signature)$|: W: (no-manual-page-for-binary twostep|invalid-license (MIT|Apache-2\.0)|manpage-not-compressed bz2 /usr/share/man/man[58]/[^ ]+\.gz)$' &&
    fail "rpmlint reports tags not explained in packaging/README.md (above)"
grep -q ' 1 packages and 0 specfiles checked' "$backup/rpmlint.log" || fail "rpmlint did not run: $(cat "$backup/rpmlint.log")"

# --- install ----------------------------------------------------------------------------------
step "install the .deb"
apt-get -o DPkg::Lock::Timeout=300 install -y -qq "./$deb" >/dev/null || fail "apt-get install ./$deb failed"
[ "$(pkg_status)" = "ii " ] || fail "twostep is not installed: $(pkg_status)"
pam_unchanged --seen-twostep || fail "installing the package changed PAM files: it must enable nothing"
[ "$(stat -c '%U:%G %a %F' /var/lib/twostep)" = "root:root 700 directory" ] ||
    fail "/var/lib/twostep: $(stat -c '%U:%G %a %F' /var/lib/twostep)"
for path in /etc/twostep/twostep.toml "$MODULE" "$CLI" "$PROFILE"; do
    [ -f "$path" ] || fail "$path is missing after install"
done
check_self_files /lib/systemd/system
check_store_files /lib/systemd/system
# Users find `twostep self` on their PATH (no /usr/sbin on Debian): /usr/bin/twostep links to it.
[ "$(readlink /usr/bin/twostep)" = ../sbin/twostep ] ||
    fail "/usr/bin/twostep is not a link to ../sbin/twostep: $(ls -l /usr/bin/twostep 2>&1)"
self_help=$(runuser -u nobody -- env PATH=/usr/local/bin:/usr/bin:/bin twostep self --help) ||
    fail "a user cannot run twostep self from /usr/bin"
[[ $self_help == *"Your own two-step login"* ]] || fail "twostep self --help printed $self_help"
version=$("$CLI" --version) || fail "$CLI --version failed"
[[ $version == "twostep "* ]] || fail "$CLI --version printed $version"
# The Cockpit page's package: checked, installed and purged by its own script.
bash packaging/cockpit/package-test.sh || fail "the cockpit-twostep package test failed"

step "enable with pam-auth-update"
pam-auth-update --enable twostep
grep -qP '^auth\trequisite\tpam_twostep\.so\s*$' /etc/pam.d/common-auth ||
    fail "common-auth does not load the module: $(cat /etc/pam.d/common-auth)"
for f in account password session session-noninteractive; do
    cmp "$backup/pam.d/common-$f" "/etc/pam.d/common-$f" || fail "common-$f changed"
done
cp /etc/pam.d/common-auth "$backup/common-auth.enabled"
# Our own checker must find the profile's line safe (its other checks, e.g. NTP, may fail here).
doctor=$("$CLI" doctor 2>&1) || true
grep -qE '^ok[[:space:]]+pam[[:space:]].*common-auth' <<<"$doctor" ||
    fail "twostep doctor does not accept common-auth: $doctor"

step "login tests against the installed files"
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
for user in "$USER_A" "$USER_B"; do
    useradd --no-create-home --shell /usr/sbin/nologin --comment "$USER_MARK" "$user"
    printf '%s:%s\n' "$user" "$password" | chpasswd
done
export TWOSTEP_TEST_MODULE=$MODULE TWOSTEP_TEST_CLI=$CLI
export TWOSTEP_PKGTEST_ENROLLED=$USER_A TWOSTEP_PKGTEST_UNENROLLED=$USER_B
export TWOSTEP_PKGTEST_PASSWORD=$password
# Runs one test target and checks that as many tests passed as expected (a filter or an ignore
# that skips them must not pass for a success).
run_tests() { # TARGET EXPECTED_PASSED [libtest args]
    local target=$1 count=$2 log
    shift 2
    log=$backup/test-$target.log
    cargo test --locked -q -p twostep-tests --test "$target" -- "$@" 2>&1 | tee "$log" >&2 ||
        fail "tests/tests/$target.rs failed against the installed files"
    grep -q "^test result: ok\. $count passed; 0 failed" "$log" ||
        fail "tests/tests/$target.rs: expected $count tests to pass"
}
core_tests=$(( $(grep -c '^#\[test\]' tests/tests/pam_core.rs) - $(grep -c '^#\[ignore' tests/tests/pam_core.rs || true) ))
pkg_tests=$(grep -c '^#\[test\]' tests/tests/packages.rs)
tests_start=$SECONDS
run_tests pam_core "$core_tests"
run_tests packages "$pkg_tests" --ignored --test-threads=1
echo "login tests took $((SECONDS - tests_start)) s"
record=/var/lib/twostep/users/$USER_A.toml
[ -f "$record" ] || fail "packages.rs left no enrollment for $USER_A"
sha256sum "$record" >"$backup/record.sha256"

# --- removal --------------------------------------------------------------------------------
step "removal is refused while a service loads the module by hand"
printf 'auth required pam_unix.so\nauth required pam_twostep.so\n' >"$MANUAL_SERVICE"
if apt-get -o DPkg::Lock::Timeout=300 remove -y -qq twostep >"$backup/refused.log" 2>&1; then
    fail "apt-get remove succeeded although $MANUAL_SERVICE loads the module"
fi
# apt runs dpkg on a pty: its lines end in \r\n.
tr -d '\r' <"$backup/refused.log" >"$backup/refused.txt" && mv "$backup/refused.txt" "$backup/refused.log"
grep -q "NOT REMOVED" "$backup/refused.log" || fail "no explanation: $(cat "$backup/refused.log")"
[ "$(pkg_status)" = "ii " ] || fail "after a refused removal the package is $(pkg_status)"
[ -f "$MODULE" ] || fail "a refused removal deleted the module"
cmp "$backup/common-auth.enabled" /etc/pam.d/common-auth || fail "a refused removal changed common-auth"
[ ! -e /run/twostep-remove-refused ] || fail "the refusal text was left in /run"
# The refusal, with its commands, comes after dpkg's generic error; only apt's summary follows.
last_ours=$(grep -an '^    apt-get remove twostep$' "$backup/refused.log" | tail -n 1 | cut -d: -f1) || true
dpkg_error=$(grep -an 'pre-removal script subprocess returned error exit status 1' "$backup/refused.log" | tail -n 1 | cut -d: -f1) || true
if [ -z "$last_ours" ] || [ -z "$dpkg_error" ] || [ "$last_ours" -le "$dpkg_error" ]; then
    fail "the refusal (line $last_ours) is not repeated after dpkg's error (line $dpkg_error): $(cat "$backup/refused.log")"
fi
tail -n +"$((last_ours + 1))" "$backup/refused.log" |
    grep -avE '^twostep: \(each sed|^Errors were encountered while processing:$|^ twostep$|^Processing was halted because there were too many errors\.$|^E: Sub-process /usr/bin/dpkg returned an error code \(1\)$' &&
    fail "more than apt's summary follows the refusal (above)"
grep -qxF "    pam-auth-update --disable twostep" "$backup/refused.log" ||
    fail "the refusal does not say pam-auth-update --disable twostep (common-auth loads the module)"
# Its command for the hand-written service works as printed.
fix=$(grep -m 1 "^    sed -i.twostep-bak .* $MANUAL_SERVICE$" "$backup/refused.log") ||
    fail "no sed command for $MANUAL_SERVICE: $(cat "$backup/refused.log")"
eval "$fix"
grep -q pam_twostep "$MANUAL_SERVICE" && fail "the printed command left the line in $MANUAL_SERVICE"
rm "$MANUAL_SERVICE" "$MANUAL_SERVICE.twostep-bak"

step "remove: PAM files as before, enrollments kept"
apt-get -o DPkg::Lock::Timeout=300 remove -y -qq twostep >/dev/null || fail "apt-get remove twostep failed"
[ "$(pkg_status)" = "rc " ] || fail "after remove the package is '$(pkg_status)', expected rc"
pam_unchanged || fail "after remove, PAM files differ from before the install"
for path in "$MODULE" "$CLI" "$PROFILE"; do
    [ ! -e "$path" ] || fail "$path is still there after remove"
done
sha256sum --quiet -c "$backup/record.sha256" || fail "remove changed or deleted the enrollment"
[ -f /etc/twostep/twostep.toml ] || fail "remove deleted the conffile"
[ -f "$SELF_PAM" ] || fail "remove deleted the conffile $SELF_PAM"
for unit in $SELF_UNITS $STORE_UNITS; do
    [ ! -e "/lib/systemd/system/$unit" ] || fail "/lib/systemd/system/$unit is still there after remove"
done

step "reinstall: the enrollment is back, nothing enabled"
apt-get -o DPkg::Lock::Timeout=300 install -y -qq "./$deb" >/dev/null || fail "apt-get install (again) failed"
sha256sum --quiet -c "$backup/record.sha256" || fail "reinstall changed the enrollment"
pam_unchanged --seen-twostep || fail "reinstalling changed PAM files"
check_self_files /lib/systemd/system
[ ! -L /etc/systemd/system/twostep-self.socket ] || fail "the socket stayed masked after the reinstall"
state_json=$("$CLI" status "$USER_A" --json) || fail "twostep status failed after reinstall"
grep -q '"state": *"enabled"' <<<"$state_json" ||
    fail "twostep status does not see $USER_A enrolled after reinstall: $state_json"

step "purge: state archived, then state and config gone"
apt-get -o DPkg::Lock::Timeout=300 purge -y -qq twostep >"$backup/purge.log" 2>&1 ||
    fail "apt-get purge twostep failed: $(cat "$backup/purge.log")"
[ -z "$(pkg_status)" ] || fail "after purge dpkg still knows twostep: $(pkg_status)"
[ ! -e /var/lib/twostep ] || fail "purge left /var/lib/twostep"
[ ! -e /etc/twostep ] || fail "purge left /etc/twostep"
archive=$(new_archives)
if [ -z "$archive" ] || [ "$(wc -l <<<"$archive")" != 1 ]; then fail "purge made no single archive: '$archive'"; fi
[[ $archive =~ ^/var/backups/twostep-[0-9]{8}T[0-9]{6}Z\.tar$ ]] || fail "archive name $archive"
[ "$(stat -c '%U:%G %a' "$archive")" = "root:root 600" ] || fail "$archive: $(stat -c '%U:%G %a' "$archive")"
grep -qF "$archive" "$backup/purge.log" || fail "purge did not say where the archive is: $(cat "$backup/purge.log")"
tar -tf "$archive" >"$backup/archive-list"
grep -qx "var/lib/twostep/users/$USER_A.toml" "$backup/archive-list" || fail "$archive lacks $USER_A's record"

step "restore the archive as docs/recovery.md says: the enrollment is back"
restore=$(sed -n '/^## After a purge/,/^## [^A]/p' docs/recovery.md | grep -m 1 -oE 'tar -C / -xpf [^ `]+')
[ "$restore" = "tar -C / -xpf /var/backups/twostep-DATE.tar" ] || fail "docs/recovery.md has no restore command: '$restore'"
apt-get -o DPkg::Lock::Timeout=300 install -y -qq "./$deb" >/dev/null || fail "apt-get install (after purge) failed"
tar -C / -xpf "$archive"
sha256sum --quiet -c "$backup/record.sha256" || fail "the restored record differs"
state_json=$("$CLI" status "$USER_A" --json) || fail "twostep status failed after the restore"
grep -q '"state": *"enabled"' <<<"$state_json" || fail "$USER_A not enrolled after the restore: $state_json"
apt-get -o DPkg::Lock::Timeout=300 purge -y -qq twostep >/dev/null 2>&1 || fail "apt-get purge (again) failed"
[ ! -e /var/lib/twostep ] || fail "the second purge left /var/lib/twostep"
for path in "$SELF_PAM" "$SOCKET_WANTS" /etc/systemd/system/twostep-self.socket "$STORE_WANTS"; do
    if [ -e "$path" ] || [ -L "$path" ]; then fail "the purge left $path"; fi
done
pam_unchanged || fail "after purge, PAM files differ from before the install"
profiles=$(echo "get libpam-runtime/profiles" | debconf-communicate libpam-runtime | cut -c3-)
[ "$profiles" = "$profiles_before" ] ||
    fail "after purge, debconf's pam-auth-update profiles are '$profiles', were '$profiles_before'"

step "ok"
