#!/usr/bin/env bash
# Tests the packages on this machine, as root: builds them (packaging/build.sh), runs
# lintian on the debs (no errors allowed), checks the rpms' file lists, attributes and
# scriptlets, then installs the debs for real, twice:
#
#   1. on a host without a `postgres` group and without /var/log/postgresql (a private
#      mount namespace with a copy of /etc lacking the group and an empty /var/log):
#      the installation succeeds and says what to do; purging leaves nothing behind;
#   2. on this host as it is: binaries, user, directories, modes, `check-config` of the
#      installed configurations, `systemd-analyze verify` of the installed units, a
#      reinstall over an edited configuration keeps the edit (conffile), remove keeps
#      the data, purge leaves no file, user or group behind.
#
# The machine is restored whatever happens (trap): the packages are purged and the
# pganalytics user and group removed. It refuses to run where pgAnalytics is already
# installed, rather than purge someone's installation.
#
#     sudo bash packaging/test.sh
set -euo pipefail

AGENT=pganalytics-agent
FEDERATOR=pganalytics-federator

PASSED=0
pass() {
    PASSED=$((PASSED + 1))
    printf 'ok: %s\n' "$*"
}
fail() {
    printf 'FAILED: %s\n' "$*" >&2
    exit 1
}

# What installing and purging may touch; the same before and after means purge left
# nothing behind. Includes the user and group, and the group memberships.
snapshot() {
    {
        find /etc/pganalytics /var/lib/pganalytics /usr/share/doc/$AGENT /usr/share/doc/$FEDERATOR \
            /usr/share/pganalytics \
            /usr/bin/pga-agent /usr/bin/pga-federator \
            /usr/lib/systemd/system/pga-agent.service /usr/lib/systemd/system/pga-federator.service \
            /usr/share/man/man1/pga-agent.1.gz /usr/share/man/man1/pga-federator.1.gz \
            /usr/share/lintian/overrides/$AGENT /usr/share/lintian/overrides/$FEDERATOR \
            -printf '%p %M %u %g\n' 2>/dev/null || true
        find /etc/systemd/system /var/lib/systemd -name 'pga-*' -printf '%p\n' 2>/dev/null || true
        grep -H pganalytics /etc/passwd /etc/group /etc/shadow /etc/gshadow 2>/dev/null || true
    } | sort
}

installed_status() {
    dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null || true
}

purge_all() {
    local pkg status
    for pkg in $AGENT $FEDERATOR; do
        status="$(installed_status "$pkg")"
        if [[ -n "$status" && "$status" != not-installed ]]; then
            dpkg --purge "$pkg" >/dev/null 2>&1 || echo "cleanup: dpkg --purge $pkg failed" >&2
        fi
    done
}

# The rpm scriptlets of the agent, run as rpm runs them (sh, with $1 = 1 to install
# and 0 to erase) on this host, in a private /etc; $1 says whether the host has a
# postgres group. Leaves /var/lib/pganalytics as it found it.
run_rpm_scriptlets() {
    local has_postgres="$1" dir="$SCRATCH/rpm-scripts" out tag
    mkdir -p "$dir"
    for tag in PREIN POSTIN PREUN POSTUN; do
        rpm -qp --qf "%{$tag}" "$AGENT_RPM" >"$dir/$tag" 2>/dev/null
    done
    out="$(sh "$dir/PREIN" 1 2>&1 && sh "$dir/POSTIN" 1 2>&1)" || fail "rpm %pre/%post failed: $out"
    printf '%s\n' "$out" | sed 's/^/  | /'
    IFS=: read -r _ _ uid gid _ home shell < <(getent passwd pganalytics) || fail "rpm %pre made no pganalytics user"
    [[ $uid -lt 1000 && "$shell" == */nologin && "$home" == /var/lib/pganalytics &&
        "$(getent group "$gid" | cut -d: -f1)" == pganalytics ]] ||
        fail "rpm %pre: pganalytics is not a system user of group pganalytics: uid $uid gid $gid home $home shell $shell"
    [[ "$(stat -c '%a %U %G' /var/lib/pganalytics/agent)" == "750 pganalytics pganalytics" ]] ||
        fail "rpm %post: /var/lib/pganalytics/agent is $(stat -c '%a %U %G' /var/lib/pganalytics/agent)"
    if [[ $has_postgres == yes ]]; then
        id -nG pganalytics | tr ' ' '\n' | grep -qx postgres || fail "rpm %post: pganalytics did not join group postgres"
        grep -q "joined group postgres" <<<"$out" || fail "rpm %post: no message about joining group postgres"
    else
        grep -q "usermod -a -G postgres pganalytics" <<<"$out" ||
            fail "rpm %post: no message saying how to join the postgres group"
    fi
    out="$(sh "$dir/PREUN" 0 2>&1 && sh "$dir/POSTUN" 0 2>&1)" || fail "rpm %preun/%postun failed: $out"
    [[ -d /var/lib/pganalytics/agent ]] || fail "rpm %postun deleted the agent's data"
    rm -rf /var/lib/pganalytics
}

# ---------------------------------------------------------------------------------
# Run by the outer test inside `unshare --mount`: the rpm scriptlets on this host, in
# a private copy of /etc.
if [[ "${1:-}" == --rpm-scriptlets ]]; then
    AGENT_RPM="$2"
    SCRATCH="$3"
    [[ ! -e /var/lib/pganalytics ]] || fail "/var/lib/pganalytics exists before the rpm scriptlets run"
    trap 'rm -rf /var/lib/pganalytics' EXIT
    cp -a /etc "$SCRATCH/etc-rpm"
    mount --bind "$SCRATCH/etc-rpm" /etc
    has_postgres=no
    if getent group postgres >/dev/null; then has_postgres=yes; fi
    run_rpm_scriptlets $has_postgres
    pass "rpm scriptlets run on this host (postgres group: $has_postgres): user, state directory, group membership or advice; erase keeps the data"
    echo "$PASSED" >"$SCRATCH/rpm-scriptlets-passed"
    exit 0
fi

# Scenario 1, run by the outer test inside `unshare --mount`: a host without the
# `postgres` group and without PostgreSQL's log directory.
if [[ "${1:-}" == --bare-host ]]; then
    PKG_DIR="$2"
    BEFORE="$3"
    SCRATCH="$4"
    AGENT_RPM="$5"
    trap 'purge_all; rm -rf /var/lib/pganalytics' EXIT
    # A private copy of /etc without a group named postgres (renamed, so that its gid
    # stays taken: the postgres user keeps it as its primary group); an empty /var/log.
    cp -a /etc "$SCRATCH/etc"
    sed -i 's/^postgres:/pga-test-hidden-postgres:/' "$SCRATCH/etc/group"
    if [[ -f "$SCRATCH/etc/gshadow" ]]; then
        sed -i 's/^postgres:/pga-test-hidden-postgres:/' "$SCRATCH/etc/gshadow"
    fi
    mount --bind "$SCRATCH/etc" /etc
    mount -t tmpfs tmpfs /var/log
    getent group postgres >/dev/null && fail "bare host: the postgres group is still visible"
    [[ -d /var/log/postgresql ]] && fail "bare host: /var/log/postgresql is still visible"

    out="$(dpkg -i "$PKG_DIR"/${AGENT}_*.deb "$PKG_DIR"/${FEDERATOR}_*.deb </dev/null 2>&1)" ||
        fail "bare host: dpkg -i failed: $out"
    printf '%s\n' "$out" | sed 's/^/  | /'
    pass "bare host: dpkg -i of both debs succeeds without a postgres group or log directory"
    grep -q "no group 'postgres'" <<<"$out" || fail "bare host: no message about the missing postgres group"
    grep -q "adduser pganalytics postgres" <<<"$out" || fail "bare host: the message does not say what to run"
    grep -q "/var/log/postgresql is not there" <<<"$out" || fail "bare host: no message about the missing log directory"
    pass "bare host: the installation says what to do about the group and the log directory"
    /usr/bin/pga-agent --version >/dev/null || fail "bare host: pga-agent --version"
    dpkg --purge $AGENT $FEDERATOR </dev/null >/dev/null
    after="$(snapshot)"
    [[ "$after" == "$(cat "$BEFORE")" ]] ||
        fail "bare host: purge left something behind:$(diff <(cat "$BEFORE") <(echo "$after") || true)"
    pass "bare host: dpkg --purge leaves no file, user or group behind"
    run_rpm_scriptlets no
    pass "bare host: the rpm scriptlets install without a postgres group, say what to do, erase keeps the data"
    echo "$PASSED" >"$SCRATCH/bare-host-passed"
    exit 0
fi

# ---------------------------------------------------------------------------------
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
START=$SECONDS

if [[ $EUID -ne 0 ]]; then
    echo "packaging/test.sh installs packages: run it as root (sudo bash packaging/test.sh)" >&2
    exit 1
fi
for pkg in $AGENT $FEDERATOR; do
    status="$(installed_status "$pkg")"
    if [[ -n "$status" && "$status" != not-installed ]]; then
        echo "$pkg is installed on this machine ($status); this test installs and purges it." >&2
        echo "Run it on a machine without pgAnalytics, or purge it first: dpkg --purge $pkg" >&2
        exit 1
    fi
done
if getent passwd pganalytics >/dev/null || getent group pganalytics >/dev/null ||
    [[ -e /etc/pganalytics || -e /var/lib/pganalytics ]]; then
    echo "a pganalytics user or group, /etc/pganalytics or /var/lib/pganalytics exists on this" >&2
    echo "machine; this test creates and deletes them. Run it on a machine without pgAnalytics." >&2
    exit 1
fi

# Tools: lintian, rpm and systemd-analyze come from Debian packages.
missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v rpm >/dev/null || missing+=(rpm)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v strip >/dev/null || missing+=(binutils)
command -v help2man >/dev/null || missing+=(help2man)
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

SCRATCH="$(mktemp -d)"
cleanup() {
    local rc=$?
    purge_all
    if getent passwd pganalytics >/dev/null; then userdel pganalytics || true; fi
    if getent group pganalytics >/dev/null; then groupdel pganalytics || true; fi
    rm -rf /etc/pganalytics /var/lib/pganalytics
    rm -rf -- "$SCRATCH"
    if [[ $rc -ne 0 ]]; then
        echo "packaging test FAILED after $((SECONDS - START))s (machine restored)" >&2
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------
# Build.
PKG_DIR="$(bash packaging/build.sh | tail -n 1)"
VERSION="$(cargo pkgid --locked -p pga-agent | sed 's/.*[#@]//')"
PKG_VERSION="${VERSION/-/\~}-1"
ARCH="$(dpkg --print-architecture)"
RPM_ARCH="$(uname -m)"
AGENT_DEB="$PKG_DIR/${AGENT}_${PKG_VERSION}_${ARCH}.deb"
FEDERATOR_DEB="$PKG_DIR/${FEDERATOR}_${PKG_VERSION}_${ARCH}.deb"
AGENT_RPM="$PKG_DIR/${AGENT}-${PKG_VERSION}.${RPM_ARCH}.rpm"
FEDERATOR_RPM="$PKG_DIR/${FEDERATOR}-${PKG_VERSION}.${RPM_ARCH}.rpm"
for f in "$AGENT_DEB" "$FEDERATOR_DEB" "$AGENT_RPM" "$FEDERATOR_RPM"; do
    [[ -f "$f" ]] || fail "build.sh did not make $f (made: $(ls "$PKG_DIR"))"
done
pass "four packages built, version $VERSION as $PKG_VERSION, in $PKG_DIR ($((SECONDS - START))s)"

# ---------------------------------------------------------------------------------
# The debs: lintian, control data, maintainer scripts.
for deb in "$AGENT_DEB" "$FEDERATOR_DEB"; do
    name="$(basename "$deb")"
    echo "lintian $name:"
    if ! lintian --fail-on error --display-info "$deb" 2>&1 | tee "$SCRATCH/lintian.txt" | sed 's/^/  | /'; then
        fail "lintian reports errors on $name"
    fi
    if grep -q '^E: ' "$SCRATCH/lintian.txt"; then
        fail "lintian reports errors on $name"
    fi
    pass "lintian: no errors on $name ($(grep -c '^W: ' "$SCRATCH/lintian.txt" || true) warnings)"
    [[ "$(dpkg-deb -f "$deb" Version)" == "$PKG_VERSION" ]] || fail "$name: Version is not $PKG_VERSION"
    ctrl="$SCRATCH/ctrl-$name"
    mkdir -p "$ctrl"
    dpkg-deb --control "$deb" "$ctrl"
    for script in preinst postinst prerm postrm; do
        if [[ -f "$ctrl/$script" ]]; then
            sh -n "$ctrl/$script" || fail "$name: $script is not valid sh"
        fi
    done
    pass "$name: version $PKG_VERSION; maintainer scripts parse ($(cd "$ctrl" && ls | tr '\n' ' '))"
done
grep -qx /etc/pganalytics/agent.toml "$SCRATCH/ctrl-$(basename "$AGENT_DEB")/conffiles" ||
    fail "$AGENT: /etc/pganalytics/agent.toml is not a conffile"
pass "$AGENT: /etc/pganalytics/agent.toml is a conffile"
grep -qx /etc/pganalytics/federator.toml "$SCRATCH/ctrl-$(basename "$FEDERATOR_DEB")/conffiles" ||
    fail "$FEDERATOR: /etc/pganalytics/federator.toml is not a conffile"
pass "$FEDERATOR: /etc/pganalytics/federator.toml is a conffile"

# ---------------------------------------------------------------------------------
# The Grafana files the federator package ships (docs/dashboards.md): every dashboard
# and provisioning file of dashboards/, under /usr/share/pganalytics/dashboards/.
dashboard_files() {
    (cd "$ROOT/dashboards" && find provisioning grafana -type f \( -name '*.json' -o -name '*.yaml' \)) |
        sed 's|^|/usr/share/pganalytics/dashboards/|' | sort
}

# The pages of docs/ both packages ship beside README.md (its links point into docs/).
doc_files() { # package name
    (cd "$ROOT/docs" && find . -maxdepth 1 -type f -name '*.md') |
        sed "s|^\./|/usr/share/doc/$1/docs/|" | sort
}

# The rpms: file lists, attributes, scriptlets.
expect_rpm_files() { # rpm, expected list (sorted)
    local got
    got="$(rpm -qpl "$1" 2>/dev/null | sort)"
    echo "rpm -qpl $(basename "$1"):"
    sed 's/^/  | /' <<<"$got"
    [[ "$got" == "$(sort <<<"$2")" ]] ||
        fail "$(basename "$1") lists other files than expected:$(diff <(sort <<<"$2") <(echo "$got") || true)"
}
expect_rpm_files "$AGENT_RPM" "/etc/pganalytics/agent.toml
/usr/bin/pga-agent
/usr/lib/systemd/system/pga-agent.service
/usr/share/man/man1/pga-agent.1.gz
/usr/share/doc/$AGENT/README.md
/usr/share/doc/$AGENT/copyright
/usr/share/doc/$AGENT/monitoring-role.sql
$(doc_files "$AGENT")"
expect_rpm_files "$FEDERATOR_RPM" "/etc/pganalytics/federator.toml
/usr/bin/pga-federator
/usr/lib/systemd/system/pga-federator.service
/usr/share/man/man1/pga-federator.1.gz
/usr/share/doc/$FEDERATOR/README.md
/usr/share/doc/$FEDERATOR/copyright
$(doc_files "$FEDERATOR")
$(dashboard_files)
/usr/share/pganalytics/rules/README.md
$(cd federator/rules && printf '/usr/share/pganalytics/rules/%s\n' *.toml)"
pass "rpm -qpl lists the expected files of both rpms"

rpm_attrs() {
    rpm -qp --qf '[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}\n]' "$1" 2>/dev/null
}
grep -qx '/etc/pganalytics/agent.toml -rw-r----- root pganalytics cn' <(rpm_attrs "$AGENT_RPM") ||
    fail "agent rpm: agent.toml is not %config(noreplace) 0640 root:pganalytics: $(rpm_attrs "$AGENT_RPM" | grep agent.toml)"
pass "agent rpm: agent.toml is %config(noreplace) 0640 root:pganalytics"
grep -qx '/etc/pganalytics/federator.toml -rw-r----- root pganalytics cn' <(rpm_attrs "$FEDERATOR_RPM") ||
    fail "federator rpm: federator.toml is not %config(noreplace) 0640 root:pganalytics"
pass "federator rpm: federator.toml is %config(noreplace) 0640 root:pganalytics"
[[ "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$AGENT_RPM" 2>/dev/null)" == "$PKG_VERSION" ]] ||
    fail "agent rpm: version is not $PKG_VERSION"

for rpmfile in "$AGENT_RPM" "$FEDERATOR_RPM"; do
    name="$(basename "$rpmfile")"
    echo "rpm -qp --scripts $name:"
    rpm -qp --scripts "$rpmfile" 2>/dev/null | sed 's/^/  | /'
    for tag in PREIN POSTIN PREUN POSTUN; do
        rpm -qp --qf "%{$tag}" "$rpmfile" >"$SCRATCH/$tag" 2>/dev/null
        if [[ "$(cat "$SCRATCH/$tag")" == "(none)" || ! -s "$SCRATCH/$tag" ]]; then
            fail "$name has no $tag scriptlet"
        fi
        sh -n "$SCRATCH/$tag" || fail "$name: the $tag scriptlet is not valid sh"
    done
    pass "$name: %pre, %post, %preun and %postun present and valid sh"
done

# ---------------------------------------------------------------------------------
BEFORE="$SCRATCH/before.txt"
snapshot >"$BEFORE"

# Scenario 1: no postgres group, no log directory (see the top of this file).
unshare --mount --propagation private \
    bash "$ROOT/packaging/test.sh" --bare-host "$PKG_DIR" "$BEFORE" "$SCRATCH" "$AGENT_RPM"
PASSED=$((PASSED + $(cat "$SCRATCH/bare-host-passed")))
unshare --mount --propagation private \
    bash "$ROOT/packaging/test.sh" --rpm-scriptlets "$AGENT_RPM" "$SCRATCH"
PASSED=$((PASSED + $(cat "$SCRATCH/rpm-scriptlets-passed")))
[[ "$(snapshot)" == "$(cat "$BEFORE")" ]] || fail "the rpm scriptlet runs left something behind"

# Scenario 2: this host.
out="$(dpkg -i "$AGENT_DEB" "$FEDERATOR_DEB" </dev/null 2>&1)" || fail "dpkg -i failed: $out"
printf '%s\n' "$out" | sed 's/^/  | /'
pass "dpkg -i of both debs succeeds"

agent_version="$(/usr/bin/pga-agent --version)"
federator_version="$(/usr/bin/pga-federator --version)"
[[ "$agent_version" == "pga-agent $VERSION" ]] || fail "pga-agent --version says '$agent_version'"
[[ "$federator_version" == "pga-federator $VERSION" ]] || fail "pga-federator --version says '$federator_version'"
pass "/usr/bin/pga-agent --version: $agent_version; /usr/bin/pga-federator --version: $federator_version"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd pganalytics) || fail "no pganalytics user"
[[ $uid -lt 1000 && "$shell" == */nologin && "$home" == /var/lib/pganalytics ]] ||
    fail "pganalytics is not a system user without a shell: uid $uid, home $home, shell $shell"
[[ "$(id -gn pganalytics)" == pganalytics ]] || fail "the primary group of pganalytics is not pganalytics"
pass "pganalytics: system user (uid $uid), group pganalytics, home $home, shell $shell"

expect_stat() { # path, "mode user group"
    local got
    got="$(stat -c '%a %U %G' "$1")"
    [[ "$got" == "$2" ]] || fail "$1 is '$got', not '$2'"
}

while read -r f; do
    [[ -f "$f" ]] || fail "$FEDERATOR: $f is not installed"
    cmp -s "$f" "$ROOT/dashboards/${f#/usr/share/pganalytics/dashboards/}" || fail "$f differs from the repository's"
    expect_stat "$f" "644 root root"
done < <(dashboard_files)
[[ "$(find /usr/share/pganalytics/dashboards -type f | wc -l)" == "$(dashboard_files | wc -l)" ]] ||
    fail "/usr/share/pganalytics/dashboards holds other files than dashboards/: $(find /usr/share/pganalytics/dashboards -type f)"
grep -q 'path: /usr/share/pganalytics/dashboards/grafana$' \
    /usr/share/pganalytics/dashboards/provisioning/dashboards/pganalytics.yaml ||
    fail "the dashboard provider does not point at /usr/share/pganalytics/dashboards/grafana"
pass "$FEDERATOR: $(dashboard_files | wc -l) Grafana dashboard and provisioning files under /usr/share/pganalytics/dashboards, as in dashboards/"
expect_stat /etc/pganalytics/agent.toml "640 root pganalytics"
expect_stat /etc/pganalytics/federator.toml "640 root pganalytics"
expect_stat /var/lib/pganalytics/agent "750 pganalytics pganalytics"
expect_stat /var/lib/pganalytics/federator "750 pganalytics pganalytics"
for doc in README.md monitoring-role.sql copyright; do
    [[ -f /usr/share/doc/$AGENT/$doc ]] || fail "/usr/share/doc/$AGENT/$doc is missing"
done
pass "agent.toml and federator.toml 0640 root:pganalytics; state directories 0750 pganalytics; docs in /usr/share/doc/$AGENT"
for pkg in "$AGENT" "$FEDERATOR"; do
    while read -r f; do
        cmp -s "$f" "$ROOT/docs/${f#/usr/share/doc/$pkg/docs/}" || fail "$f is missing or differs from the repository's"
        expect_stat "$f" "644 root root"
    done < <(doc_files "$pkg")
    # Every docs/ page README.md links to is there.
    while read -r link; do
        [[ -f /usr/share/doc/$pkg/$link ]] || fail "README.md links to $link, not installed in /usr/share/doc/$pkg"
    done < <(grep -oE '\(docs/[a-z0-9-]+\.md' /usr/share/doc/$pkg/README.md | tr -d '(' | sort -u)
done
pass "both packages ship docs/ ($(doc_files "$AGENT" | wc -l) pages) beside README.md, every page README.md links to"

if getent group postgres >/dev/null; then
    id -nG pganalytics | tr ' ' '\n' | grep -qx postgres || fail "pganalytics did not join the postgres group"
    grep -q "joined group postgres" <<<"$out" || fail "no message about joining the postgres group"
    pass "pganalytics joined the existing postgres group, and the installation says so"
else
    echo "note: this host has no postgres group; scenario 1 covered that case"
fi

# The default configurations pass check-config, read as the service user would.
runuser -u pganalytics -- /usr/bin/pga-agent check-config --config /etc/pganalytics/agent.toml \
    >"$SCRATCH/check.txt" 2>&1 || fail "the installed agent.toml fails check-config: $(cat "$SCRATCH/check.txt")"
pass "the installed /etc/pganalytics/agent.toml passes check-config as user pganalytics"
expect_stat /etc/pganalytics/federator.toml "640 root pganalytics"
runuser -u pganalytics -- /usr/bin/pga-federator check-config --config /etc/pganalytics/federator.toml \
    >"$SCRATCH/check.txt" 2>&1 ||
    fail "the installed federator.toml fails check-config: $(cat "$SCRATCH/check.txt")"
pass "the installed /etc/pganalytics/federator.toml (0640 root:pganalytics) passes check-config as user pganalytics"
# The built-in rule pack is installed where the default configuration loads it from,
# and its tests pass there.
runuser -u pganalytics -- /usr/bin/pga-federator rules test --config /etc/pganalytics/federator.toml \
    >"$SCRATCH/rules.txt" 2>&1 ||
    fail "the installed rule pack's tests fail: $(cat "$SCRATCH/rules.txt")"
grep -q ' passed, 0 failed' "$SCRATCH/rules.txt" || fail "rules test ran no test: $(cat "$SCRATCH/rules.txt")"
pass "the built-in rules in /usr/share/pganalytics/rules load and pass their tests: $(tail -1 "$SCRATCH/rules.txt")"

for unit in pga-agent pga-federator; do
    file=/usr/lib/systemd/system/$unit.service
    [[ -f $file ]] || fail "$file is not installed"
    verify="$(systemd-analyze verify "$file" 2>&1)" || fail "systemd-analyze verify $unit.service: $verify"
    if grep -i "$unit" <<<"$verify"; then
        fail "systemd-analyze verify complains about $unit.service"
    fi
    pass "systemd-analyze verify accepts the installed $unit.service"
done

# A reinstall over an edited configuration keeps the edit.
sed -i 's/^fast_secs = 10$/fast_secs = 15  # edited by the administrator/' /etc/pganalytics/agent.toml
grep -q 'fast_secs = 15' /etc/pganalytics/agent.toml || fail "could not edit agent.toml for the conffile test"
dpkg -i "$AGENT_DEB" </dev/null >"$SCRATCH/reinstall.txt" 2>&1 ||
    fail "reinstall over an edited agent.toml failed: $(cat "$SCRATCH/reinstall.txt")"
grep -q 'fast_secs = 15  # edited by the administrator' /etc/pganalytics/agent.toml ||
    fail "reinstalling lost the edit of agent.toml"
[[ ! -e /etc/pganalytics/agent.toml.dpkg-new && ! -e /etc/pganalytics/agent.toml.dpkg-dist ]] ||
    fail "reinstalling left a .dpkg-new/.dpkg-dist beside agent.toml"
expect_stat /etc/pganalytics/agent.toml "640 root pganalytics"
runuser -u pganalytics -- /usr/bin/pga-agent check-config --config /etc/pganalytics/agent.toml \
    >"$SCRATCH/check.txt" 2>&1 || fail "the edited agent.toml fails check-config: $(cat "$SCRATCH/check.txt")"
grep -q 'fast 15s' "$SCRATCH/check.txt" || fail "check-config does not show the edited fast_secs: $(cat "$SCRATCH/check.txt")"
pass "reinstalling over an edited agent.toml keeps the edit (conffile), mode 0640 root:pganalytics"
sed -i 's/^max_connections = 8$/max_connections = 9  # edited by the administrator/' /etc/pganalytics/federator.toml
grep -q 'max_connections = 9' /etc/pganalytics/federator.toml || fail "could not edit federator.toml for the conffile test"
dpkg -i "$FEDERATOR_DEB" </dev/null >"$SCRATCH/reinstall.txt" 2>&1 ||
    fail "reinstall over an edited federator.toml failed: $(cat "$SCRATCH/reinstall.txt")"
grep -q 'max_connections = 9  # edited by the administrator' /etc/pganalytics/federator.toml ||
    fail "reinstalling lost the edit of federator.toml"
expect_stat /etc/pganalytics/federator.toml "640 root pganalytics"
pass "reinstalling over an edited federator.toml keeps the edit (conffile), mode 0640 root:pganalytics"

# Remove keeps the data and the configuration; purge deletes them.
runuser -u pganalytics -- sh -c 'echo kept > /var/lib/pganalytics/agent/marker'
dpkg --remove $AGENT </dev/null >/dev/null
[[ -f /var/lib/pganalytics/agent/marker && -f /etc/pganalytics/agent.toml ]] ||
    fail "dpkg --remove deleted the agent's data or configuration"
[[ ! -e /usr/bin/pga-agent ]] || fail "dpkg --remove left /usr/bin/pga-agent"
getent passwd pganalytics >/dev/null || fail "dpkg --remove of the agent deleted the user the federator runs as"
pass "dpkg --remove keeps /var/lib/pganalytics/agent and the edited agent.toml"
dpkg --purge $AGENT $FEDERATOR </dev/null >/dev/null
after="$(snapshot)"
[[ "$after" == "$(cat "$BEFORE")" ]] ||
    fail "dpkg --purge left something behind:$(diff "$BEFORE" <(echo "$after") || true)"
pass "dpkg --purge leaves no file, user or group behind"

printf '\npackaging: %d checks passed in %ds\n' "$PASSED" "$((SECONDS - START))"
printf '%d passed, 0 failed\n' "$PASSED"
