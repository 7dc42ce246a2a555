#!/bin/sh
# Builds twostep from this source tree and installs it on this machine, or takes it away:
#
#   packaging/install.sh                      build and install
#   packaging/install.sh --uninstall          remove what it installed; keep the enrollments
#                                             (/var/lib/twostep) and the config (/etc/twostep)
#   packaging/install.sh --uninstall --purge  also archive both to
#                                             /var/backups/twostep-<date>.tar (root, 0600),
#                                             then delete them
#
# What it installs (the .deb's paths):
#   pam_twostep.so  -> the PAM module directory (multiarch on Debian)
#   twostep         -> /usr/sbin (the packages' path, which [email] helper expects), and a
#                      link in /usr/local/bin for users (twostep self)
#   man pages       -> /usr/share/man/man8 (twostep*.8, pam_twostep.8), man5 (twostep.toml.5)
#   completions     -> bash, zsh and fish completion directories
#   twostep.toml    -> /etc/twostep (kept if present)
#   state directory -> /var/lib/twostep (root, 0700)
#   self-service    -> twostep-self.socket and .service in /usr/local/lib/systemd/system
#                      (the socket enabled, and started when systemd runs) and the PAM
#                      service /etc/pam.d/twostep-self (kept if present; docs/self-service.md)
#   fleet store     -> twostep-store.socket and .service in /usr/local/lib/systemd/system, not
#                      enabled (docs/fleet.md: `systemctl enable --now twostep-store.socket`)
# and lists every file in /usr/share/twostep/installed-files, which --uninstall reads. It does
# not change any PAM service: nobody is asked for a code until you enroll users and add the
# module to a service (see README.md, docs/pam.md). --uninstall refuses while a PAM file loads
# the module (every login through it would fail once the module is gone).
#
# Rust: a cargo of version 1.85 or newer on PATH is used; without one, on Debian, the packages
# rustc-web and cargo-web (Debian 12's newer Rust, from bookworm and bookworm-security) are
# installed; elsewhere install Rust with rustup (https://rustup.rs) and rerun.
#
# On Debian and RPM systems prefer the packages (packaging/build-packages.sh, then
# docs/admin-guide.md): they can be upgraded and removed cleanly. Do not mix the two.
set -eu

RUST_MIN=1.85
MANIFEST=/usr/share/twostep/installed-files

die() { echo "install.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
cd "$(dirname "$0")/.."

mode=install
purge=no
for arg in "$@"; do
    case $arg in
        --uninstall) mode=uninstall ;;
        --purge) purge=yes ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $arg (usage: install.sh [--uninstall [--purge]])" ;;
    esac
done
[ "$purge" = no ] || [ "$mode" = uninstall ] || die "--purge goes with --uninstall"

if dpkg-query -W -f='${db:Status-Abbrev}' twostep 2>/dev/null | grep -q '^i'; then
    die "twostep is installed as a Debian package here; use apt-get, not install.sh"
fi
if command -v rpm >/dev/null 2>&1 && rpm -q twostep >/dev/null 2>&1; then
    die "twostep is installed as an RPM package here; use dnf or rpm, not install.sh"
fi

# FILE:LINE: TEXT for every PAM line that loads the module (comments ignored).
pam_references() {
    for file in /etc/pam.d/* /etc/pam.conf; do
        [ -f "$file" ] || continue
        sed 's/#.*//' "$file" | grep -nE '(^|[[:space:]/])pam_twostep\.so([[:space:]]|$)' |
            sed "s|^|$file:|" || true
    done
}

# Archives /var/lib/twostep and /etc/twostep (those that exist) to /var/backups, root 0600.
archive_state() {
    set --
    for dir in var/lib/twostep etc/twostep; do
        if [ -e "/$dir" ]; then set -- "$@" "$dir"; fi
    done
    [ $# -gt 0 ] || return 0
    archive=/var/backups/twostep-$(date -u +%Y%m%dT%H%M%SZ).tar
    mkdir -p /var/backups
    (umask 077 && tar -C / -cf "$archive" "$@")
    chown root:root "$archive"
    chmod 0600 "$archive"
    echo "Archived /var/lib/twostep and /etc/twostep to $archive (root, 0600);"
    echo "restore with: tar -C / -xpf $archive   (docs/recovery.md)"
}

if [ "$mode" = uninstall ]; then
    [ -f "$MANIFEST" ] || die "$MANIFEST is missing: twostep was not installed by install.sh"
    refs=$(pam_references)
    if [ -n "$refs" ]; then
        {
            echo "install.sh: NOT UNINSTALLED. These PAM lines load pam_twostep.so, and every login"
            echo "through them would fail once the module is gone:"
            echo "$refs" | sed 's/^/    /'
            echo "Take the module out of PAM first, then uninstall again:"
            echo "$refs" | cut -d: -f1 | sort -u | while read -r file; do
                echo "    sed -i.twostep-bak '/^[^#]*pam_twostep\\.so/d' $file"
            done
            if [ "$purge" = yes ]; then
                echo "    packaging/install.sh --uninstall --purge"
            else
                echo "    packaging/install.sh --uninstall"
            fi
        } >&2
        exit 1
    fi
    # The self-service and the fleet store first: no socket may stay listening for a binary
    # that goes away.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --quiet twostep-self.socket twostep-store.socket >/dev/null 2>&1 || true
        if [ -d /run/systemd/system ]; then
            systemctl stop twostep-self.socket twostep-self.service twostep-store.socket \
                twostep-store.service >/dev/null 2>&1 || true
        fi
    fi
    while read -r file; do
        case $file in
            /*) rm -f "$file" ;;
            *) die "$MANIFEST: unexpected line $file" ;;
        esac
    done <"$MANIFEST"
    rm -f "$MANIFEST"
    rmdir /usr/share/twostep 2>/dev/null || true
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
    echo "Removed the files install.sh installed."
    if [ "$purge" = yes ]; then
        archive_state
        rm -rf /var/lib/twostep /etc/twostep
        echo "Deleted /var/lib/twostep and /etc/twostep."
    else
        echo "Kept the enrollments (/var/lib/twostep) and the config (/etc/twostep);"
        echo "--uninstall --purge archives and deletes them."
    fi
    exit 0
fi

# --- install --------------------------------------------------------------------------------
if command -v apt-get >/dev/null 2>&1; then
    set --   # the missing build packages
    for pkg in libpam0g-dev libssl-dev gcc pkg-config; do
        dpkg -s "$pkg" >/dev/null 2>&1 || set -- "$@" "$pkg"
    done
    if [ $# -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
    fi
fi

# Whether `cargo` on PATH is at least $RUST_MIN.
cargo_new_enough() {
    command -v cargo >/dev/null 2>&1 || return 1
    version=$(cargo --version 2>/dev/null | awk '{print $2}')
    [ -n "$version" ] || return 1
    [ "$(printf '%s\n%s\n' "$RUST_MIN" "$version" | sort -V | head -n 1)" = "$RUST_MIN" ]
}
if ! cargo_new_enough; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: no cargo $RUST_MIN or newer on PATH; installing Debian's rustc-web and cargo-web"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web
    fi
    cargo_new_enough || die "needs cargo $RUST_MIN or newer: install Rust with rustup (https://rustup.rs), then rerun"
fi

cargo build --release --locked -p pam_twostep -p twostep-cli

# The directory that holds pam_unix.so is where this system's libpam looks for modules.
pam_dir=""
for d in /usr/lib/x86_64-linux-gnu/security /usr/lib/aarch64-linux-gnu/security \
         /usr/lib64/security /lib/x86_64-linux-gnu/security /lib/security /usr/lib/security; do
    if [ -e "$d/pam_unix.so" ]; then pam_dir=$d; break; fi
done
[ -n "$pam_dir" ] || die "cannot find the PAM module directory"

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
target/release/twostep-gen "$gen"
cp docs/man/pam_twostep.8 docs/man/twostep.toml.5 "$gen/man/"

# Debian's zsh reads vendor-completions; Fedora's and RHEL's read site-functions.
zsh_dir=/usr/share/zsh/vendor-completions
[ -f /etc/debian_version ] || zsh_dir=/usr/share/zsh/site-functions

installed=""
put() { # MODE SOURCE DEST
    install -D -m "$1" "$2" "$3"
    installed="$installed$3
"
}
put 0644 target/release/libpam_twostep.so "$pam_dir/pam_twostep.so"
put 0755 target/release/twostep /usr/sbin/twostep
# Users run `twostep self` (docs/self-service.md), and a Debian user's PATH has no /usr/sbin.
if [ ! -e /usr/local/bin/twostep ] || [ -L /usr/local/bin/twostep ]; then
    mkdir -p /usr/local/bin
    ln -sfn /usr/sbin/twostep /usr/local/bin/twostep
    installed="$installed/usr/local/bin/twostep
"
fi
for page in "$gen"/man/*; do
    name=${page##*/}
    gzip -9 -n -f "$page"
    put 0644 "$page.gz" "/usr/share/man/man${name##*.}/$name.gz"
done
put 0644 "$gen/completions/twostep.bash" /usr/share/bash-completion/completions/twostep
put 0644 "$gen/completions/_twostep" "$zsh_dir/_twostep"
put 0644 "$gen/completions/twostep.fish" /usr/share/fish/vendor_completions.d/twostep.fish
# The self-service (docs/self-service.md): systemd's directory for locally installed units, and
# the PAM service that checks users' passwords (pam_unix only; an existing one is kept).
unit_dir=/usr/local/lib/systemd/system
put 0644 packaging/systemd/twostep-self.socket "$unit_dir/twostep-self.socket"
put 0644 packaging/systemd/twostep-self.service "$unit_dir/twostep-self.service"
# The fleet store (docs/fleet.md): installed, never enabled here (the default backend is the
# file store); fleet setup enables it with `systemctl enable --now twostep-store.socket`.
put 0644 packaging/systemd/twostep-store.socket "$unit_dir/twostep-store.socket"
put 0644 packaging/systemd/twostep-store.service "$unit_dir/twostep-store.service"
if [ ! -e /etc/pam.d/twostep-self ]; then
    put 0644 packaging/pam.d/twostep-self /etc/pam.d/twostep-self
fi
install -d -m 0755 /usr/share/twostep
printf '%s' "$installed" >"$MANIFEST"
install -d -m 0755 /etc/twostep
[ -e /etc/twostep/twostep.toml ] || install -m 0644 packaging/twostep.toml /etc/twostep/twostep.toml
install -d -m 0700 /var/lib/twostep
if command -v mandb >/dev/null 2>&1; then mandb -q 2>/dev/null || true; fi
# Enabled without a running systemd too (it only makes the symlink); started when it runs.
self_service="enabled"
if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable --now --quiet twostep-self.socket || self_service="NOT enabled (systemctl failed)"
    else
        systemctl enable --quiet twostep-self.socket || self_service="NOT enabled (systemctl failed)"
    fi
else
    self_service="installed, not enabled (no systemctl)"
fi

echo "Installed $pam_dir/pam_twostep.so, /usr/sbin/twostep, man pages (man twostep) and"
echo "completions; the list is in $MANIFEST (packaging/install.sh --uninstall removes them)."
echo "Self-service for users (twostep self, twostep-self.socket): $self_service."
echo "Next: enroll a user (twostep enroll USER --yes), then add to a PAM service, after the"
echo "password module, which must end the stack on failure (requisite; Debian's common-auth does):"
echo "    auth requisite pam_unix.so     (or: @include common-auth)"
echo "    auth required  pam_twostep.so"
echo "and run 'twostep doctor'."
