#!/bin/bash
# Builds the Cockpit page's packages from cockpit/ (architecture-independent, no build step):
#
#   packaging/cockpit/build.sh VERSION  ->  target/packages/cockpit-twostep_<VERSION>-1_all.deb
#                                           target/packages/cockpit-twostep-<VERSION>-1.noarch.rpm
#
# Run by packaging/build-packages.sh after the twostep packages (VERSION is twostep's); both
# install the five files of cockpit/ into /usr/share/cockpit/twostep/ and depend on twostep of
# the same version (the page runs its JSON commands) and on cockpit-system (Cockpit's shell and
# the PatternFly styles the page uses). Needs dpkg-deb and rpmbuild (Debian package `rpm`).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
log() { printf 'cockpit-twostep: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

version=${1:-}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "usage: packaging/cockpit/build.sh VERSION"
for tool in dpkg-deb rpmbuild; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install dpkg-dev rpm)"
done
files=(manifest.json index.html twostep.js self.js twostep.css)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
out=target/packages
work=$out/gen/cockpit
rm -rf "$work"
mkdir -p "$work"

# --- .deb ---
deb_root=$work/deb
share=$deb_root/usr/share/cockpit/twostep
mkdir -p "$share" "$deb_root/usr/share/doc/cockpit-twostep" "$deb_root/DEBIAN"
for f in "${files[@]}"; do
    install -m 0644 "cockpit/$f" "$share/$f"
done
install -m 0644 packaging/copyright "$deb_root/usr/share/doc/cockpit-twostep/copyright"
size=$(du -k -s --exclude=DEBIAN "$deb_root" | cut -f1)
cat >"$deb_root/DEBIAN/control" <<CONTROL
Package: cockpit-twostep
Version: $version-1
Architecture: all
Maintainer: twostep developers <twostep@example.invalid>
Installed-Size: $size
Depends: twostep (= $version-1), cockpit-system (>= 287)
Section: admin
Priority: optional
Description: Cockpit page for two-step login (twostep)
 A page in the Cockpit web console to run two-step login: the users list
 (enabled, disabled, incomplete, locked), enrollment with a QR code and
 emergency codes, reset, restore, unlock, recovery addresses, the policy
 in /etc/twostep/twostep.toml and the checks of twostep doctor. It runs the
 twostep command with administrative access and holds no logic of its own.
 .
 Every other user sees only their own account: turning two-step login on
 (QR code, emergency codes), new codes, another device, the recovery
 address, turning it off, and recent logins, through twostep self and the
 twostep-self service.
CONTROL
chmod 0644 "$deb_root/DEBIAN/control"
find "$deb_root" -type d -exec chmod 0755 {} +
find "$deb_root" -exec touch -h -d "@$epoch" {} +
rm -f "$out"/cockpit-twostep_*.deb "$out"/cockpit-twostep-*.rpm
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$deb_root" \
    "$out/cockpit-twostep_${version}-1_all.deb" >/dev/null

# --- .rpm ---
top=$work/rpm
mkdir -p "$top/SOURCES" "$top/SPECS"
for f in "${files[@]}"; do
    install -m 0644 "cockpit/$f" "$top/SOURCES/$f"
done
install -m 0644 packaging/copyright "$top/SOURCES/copyright"
sed "s/@VERSION@/$version/g" packaging/cockpit/cockpit-twostep.spec >"$top/SPECS/cockpit-twostep.spec"
SOURCE_DATE_EPOCH=$epoch rpmbuild --quiet -bb \
    --define "_topdir $root/$top" \
    --define "_rpmdir $root/$out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "_buildhost twostep" \
    "$top/SPECS/cockpit-twostep.spec" >/dev/null
ls -l "$out/cockpit-twostep_${version}-1_all.deb" "$out/cockpit-twostep-${version}-1.noarch.rpm"
