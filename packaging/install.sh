#!/bin/sh
# Builds twostep from this source tree and installs it on this machine:
#   pam_twostep.so  -> the PAM module directory (multiarch on Debian)
#   twostep         -> /usr/sbin (the packages' path, which [email] helper expects)
#   twostep.toml    -> /etc/twostep (kept if present)
#   state directory -> /var/lib/twostep (root, 0700)
# It does not change any PAM service: nobody is asked for a code until you enroll users and
# add the module to a service (see README.md, docs/pam.md).
#
# On Debian and RPM systems prefer the packages (packaging/build-packages.sh, then
# docs/admin-guide.md): they can be upgraded and removed cleanly. Do not mix the two.
set -eu

[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
cd "$(dirname "$0")/.."

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
command -v cargo >/dev/null 2>&1 || {
    echo "install.sh: cargo not found; install Rust 1.85 or newer (rustup), then rerun" >&2
    exit 1
}

cargo build --release --locked -p pam_twostep -p twostep-cli

# The directory that holds pam_unix.so is where this system's libpam looks for modules.
pam_dir=""
for d in /usr/lib/x86_64-linux-gnu/security /usr/lib/aarch64-linux-gnu/security \
         /usr/lib64/security /lib/x86_64-linux-gnu/security /lib/security /usr/lib/security; do
    if [ -e "$d/pam_unix.so" ]; then pam_dir=$d; break; fi
done
[ -n "$pam_dir" ] || { echo "install.sh: cannot find the PAM module directory" >&2; exit 1; }

install -m 0644 target/release/libpam_twostep.so "$pam_dir/pam_twostep.so"
install -m 0755 target/release/twostep /usr/sbin/twostep
install -d -m 0755 /etc/twostep
[ -e /etc/twostep/twostep.toml ] || install -m 0644 packaging/twostep.toml /etc/twostep/twostep.toml
install -d -m 0700 /var/lib/twostep

echo "Installed $pam_dir/pam_twostep.so and /usr/sbin/twostep."
echo "Next: enroll a user (twostep enroll USER --yes), then add to a PAM service, after the"
echo "password module, which must end the stack on failure (requisite; Debian's common-auth does):"
echo "    auth requisite pam_unix.so     (or: @include common-auth)"
echo "    auth required  pam_twostep.so"
echo "and run 'twostep doctor'."
