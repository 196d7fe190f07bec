#!/usr/bin/env bash
# Builds the four packages of pgAnalytics: pganalytics-agent and pganalytics-federator,
# each as a .deb (cargo-deb) and an .rpm (cargo-generate-rpm), for this machine's
# architecture, into target/packages/ (or the directory given as the first argument),
# and prints that directory. Installs cargo-deb and cargo-generate-rpm with
# `cargo install --locked` when they are missing.
#
# The version of every package is the workspace's ([workspace.package] version in the
# root Cargo.toml), spelt as each format wants it: a pre-release 3.0.0-alpha.1 becomes
# 3.0.0~alpha.1-1 in both (the tilde sorts before the final 3.0.0).
#
#     bash packaging/build.sh              # -> target/packages/*.deb, *.rpm
#     bash packaging/build.sh /tmp/pkgs
set -euo pipefail

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
OUT="${1:-$ROOT/target/packages}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

need_tool() { # subcommand crate version
    if cargo "$1" --version >/dev/null 2>&1; then
        return 0
    fi
    echo "build.sh: installing $2 $3 (once)" >&2
    cargo install --locked "$2" --version "$3"
}
need_tool deb cargo-deb "$CARGO_DEB_VERSION"
need_tool generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"
# strip (binutils) and help2man (the manual pages, from --help) are Debian packages.
missing=()
command -v strip >/dev/null || missing+=(binutils)
command -v help2man >/dev/null || missing+=(help2man)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "build.sh: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    else
        echo "build.sh: missing ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

# The one version, from the workspace; rpm forbids '-' in a version, and '~' sorts a
# pre-release before its release, as the semver '-' does.
# `cargo pkgid` ends in "#pga-agent@3.0.0-alpha.1" (or "#3.0.0-alpha.1").
VERSION="$(cargo pkgid --locked -p pga-agent | sed 's/.*[#@]//')"
RPM_VERSION="${VERSION/-/\~}"
echo "build.sh: version $VERSION (rpm $RPM_VERSION-1, deb $RPM_VERSION-1)" >&2

# The Debian changelog of both packages, made from that version (Debian policy wants
# one in every package); dated by the last commit so that a rebuild is identical.
GENERATED="$ROOT/packaging/generated"
mkdir -p "$GENERATED"
# (Not exported: C build scripts of dependencies rebuild when SOURCE_DATE_EPOCH changes.)
EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
DATE="$(date -R -u -d "@$EPOCH")"
for pkg in pganalytics-agent pganalytics-federator; do
    cat >"$GENERATED/$pkg.changelog" <<EOF
$pkg ($RPM_VERSION-1) unstable; urgency=medium

  * pgAnalytics $VERSION; README.md in this directory says what it does.

 -- pgAnalytics developers <dev@pganalytics.invalid>  $DATE
EOF
done

cargo build --release --locked -p pga-agent -p pga-federator
# cargo-generate-rpm packs the binaries as they are: strip them here (cargo-deb would
# strip its own copies anyway). Cargo still sees them as up to date.
BIN="$(cargo metadata --locked --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
strip "$BIN/pga-agent" "$BIN/pga-federator"

# Manual pages from each binary's --help and --version.
SOURCE_DATE_EPOCH="$EPOCH" help2man --no-info --section 1 --name "pgAnalytics agent: PostgreSQL and host metrics collector" \
    "$BIN/pga-agent" | gzip -9n >"$GENERATED/pga-agent.1.gz"
SOURCE_DATE_EPOCH="$EPOCH" help2man --no-info --section 1 --name "pgAnalytics federator: pulls pgAnalytics agents into PostgreSQL" \
    "$BIN/pga-federator" | gzip -9n >"$GENERATED/pga-federator.1.gz"

rm -f "$OUT"/pganalytics-agent[_-]*.deb "$OUT"/pganalytics-federator[_-]*.deb \
    "$OUT"/pganalytics-agent-*.rpm "$OUT"/pganalytics-federator-*.rpm
for crate in pga-agent pga-federator; do
    cargo deb --locked --no-build -p "$crate" --output "$OUT" >&2
    cargo generate-rpm -p "${crate#pga-}" --output "$OUT" \
        --set-metadata "version = \"$RPM_VERSION\"" --set-metadata 'release = "1"'
done

ls -l "$OUT" >&2
echo "$OUT"
