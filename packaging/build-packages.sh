#!/bin/bash
# Builds the Debian and RPM packages of twostep from this source tree:
#
#   packaging/build-packages.sh      ->  target/packages/twostep_<version>-1_amd64.deb
#                                        target/packages/twostep-<version>-1.x86_64.rpm
#
# Steps: installs the pinned cargo-deb if it is missing (into ~/.cache/twostep/packaging-tools,
# so other versions on the machine are left alone), builds the module and the CLI in release
# mode, generates the man pages and completions with `twostep-gen`, gzips the man pages,
# strips the binaries (and their .comment section), then runs cargo-deb and rpmbuild. The .deb
# metadata is in twostep-cli/Cargo.toml, the .rpm's in packaging/rpm/twostep.spec; everything
# else in packaging/ (README.md). Both are reproducible: SOURCE_DATE_EPOCH (default: the last
# commit's time) dates the changelog, the RPM build time and every file time.
#
# Needs a Rust toolchain and, on Debian, libpam0g-dev, libssl-dev, gcc, pkg-config, dpkg-dev
# (dpkg-shlibdeps computes the .deb's Depends), binutils and rpm (rpmbuild, for cockpit-twostep);
# `--install-deps` installs those with apt-get first (as root).
set -euo pipefail

CARGO_DEB_VERSION=3.8.0

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'build-packages: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [ "${1:-}" = --install-deps ]; then
    shift
    missing=()
    for pkg in libpam0g-dev libssl-dev gcc pkg-config dpkg-dev binutils gzip rpm; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
fi
[ $# -eq 0 ] || die "usage: packaging/build-packages.sh [--install-deps]"

# The .deb puts the module in the x86_64 multiarch directory and the .rpm in /usr/lib64: both
# are only right for x86_64 builds. Refuse others rather than build a package that installs the
# module where libpam does not look.
[ "$(uname -m)" = x86_64 ] || die "only x86_64 packages are described (see packaging/README.md)"
for tool in cargo strip gzip dpkg-shlibdeps rpmbuild; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (try --install-deps)"
done

# Pinned packaging tools, each version in its own directory.
tools=${XDG_CACHE_HOME:-$HOME/.cache}/twostep/packaging-tools
cargo_deb=$tools/cargo-deb-$CARGO_DEB_VERSION/bin/cargo-deb
install_tool() { # CRATE VERSION
    local dir=$tools/$1-$2
    [ -x "$dir/bin/$1" ] && return 0
    log "installing $1 $2 into $dir (once)"
    local start=$SECONDS
    cargo install --quiet --locked --version "=$2" --root "$dir" "$1"
    log "installed $1 $2 in $((SECONDS - start)) s"
}
install_tool cargo-deb "$CARGO_DEB_VERSION"

target_dir=${CARGO_TARGET_DIR:-target}
release=$target_dir/release
out=target/packages
gen=$out/gen

log "building (release)"
cargo build --release --locked -p pam_twostep -p twostep-cli

rm -rf "$gen"
mkdir -p "$gen/bin"
"$release/twostep-gen" "$gen"
# The hand-written pages sit beside the generated ones; every page is gzipped reproducibly.
cp docs/man/pam_twostep.8 docs/man/twostep.toml.5 "$gen/man/"
for page in "$gen"/man/*; do
    case $page in *.[158]) ;; *) die "unexpected man page $page" ;; esac
    gzip -9 -n -f "$page"
done
for f in twostep.bash _twostep twostep.fish; do
    [ -s "$gen/completions/$f" ] || die "twostep-gen did not write completions/$f"
done
[ -s "$gen/man/twostep.8.gz" ] || die "twostep-gen did not write man/twostep.8"
# Debian's changelog.Debian.gz: one entry for the version being packaged, dated from the last
# commit (or $SOURCE_DATE_EPOCH) so that rebuilding the same tree gives the same package.
version=$("$release/twostep" --version | awk '{print $2}')
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "cannot read the version from twostep --version"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch
cat >"$gen/changelog" <<EOF
twostep ($version-1) unstable; urgency=medium

  * Built from the twostep source tree by packaging/build-packages.sh.

 -- twostep developers <twostep@example.invalid>  $(date -u -R -d "@$epoch")
EOF
# Both packages take these copies: stripped, and without the .comment section (the compiler
# version strings; lintian's binary-has-unneeded-section).
for f in libpam_twostep.so:pam_twostep.so twostep:twostep; do
    strip --strip-unneeded --remove-section=.comment -o "$gen/bin/${f#*:}" "$release/${f%%:*}"
done

# /usr/bin/twostep -> ../sbin/twostep: `twostep self` is a user's command, and a Debian user's
# PATH has no /usr/sbin. A link to a path that does not exist here, so cargo-deb keeps it as a
# symlink instead of copying a file.
ln -sfn ../sbin/twostep "$gen/bin/twostep-user-link"

rm -f "$out"/twostep_*.deb "$out"/twostep-*.rpm
log "cargo deb"
"$cargo_deb" deb --quiet --no-build --no-strip --locked -p twostep-cli --output "$out/"
log "rpmbuild"
rpmtop=$out/rpmbuild
rm -rf "$rpmtop"
rpmbuild -bb --quiet --target x86_64 \
    --define "_topdir $root/$rpmtop" --define "version $version" \
    --define "src $root" --define "gen $root/$gen" \
    --define "changelog_date $(LC_ALL=C date -u -d "@$epoch" '+%a %b %d %Y')" \
    packaging/rpm/twostep.spec >"$out/rpmbuild.log" 2>&1 || { cat "$out/rpmbuild.log" >&2; die "rpmbuild failed"; }
mv "$rpmtop"/RPMS/x86_64/twostep-"$version"-1.x86_64.rpm "$out/"
rm -rf "$rpmtop"

shopt -s nullglob
debs=("$out"/twostep_*.deb)
rpms=("$out"/twostep-*.rpm)
if [ ${#debs[@]} -ne 1 ] || [ ${#rpms[@]} -ne 1 ]; then
    die "expected one .deb and one .rpm in $out"
fi
ls -l "${debs[0]}" "${rpms[0]}"
# The Cockpit page, cockpit-twostep (architecture-independent): packaging/cockpit/build.sh.
bash packaging/cockpit/build.sh "$version"
