#!/usr/bin/env bash
# Peak memory of `migrate lint` and `migrate up` on big generated migrations (issue 21, item
# 20): prints, for each file, its size and the peak RSS (GNU time's "Maximum resident set
# size") of each command, and the ratio to the file's size. Two files:
#   - many: 500,381 one-row INSERTs (~47 MB), after a CREATE TABLE;
#   - one:  a single INSERT of ~48 MB of literal rows.
# `up` runs against a throwaway PostgreSQL cluster the script starts under
# target/bench-memory (initdb/pg_ctl from $MIGRATE_PG_BIN, PATH or /usr/lib/postgresql/*/bin;
# as `nobody` when run as root) and stops at the end.
#
# usage: scripts/bench-memory.sh [--release] [--lint-only]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/bench-memory"
profile=debug
lint_only=false
for arg in "$@"; do
    case "$arg" in
        --release) profile=release ;;
        --lint-only) lint_only=true ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
if [ "$profile" = release ]; then
    (cd "$root" && cargo build -q --release -p migrate-cli)
else
    (cd "$root" && cargo build -q -p migrate-cli)
fi
migrate="$root/target/$profile/migrate"
mkdir -p "$work"

python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
create = "CREATE TABLE IF NOT EXISTS seed_rows (id bigint PRIMARY KEY, name text, note text);\n"
os.makedirs(f"{work}/many", exist_ok=True)
os.makedirs(f"{work}/one", exist_ok=True)
with open(f"{work}/many/0001_seed.expand.sql", "w") as f:
    f.write(create)
    for i in range(500381):
        f.write(f"INSERT INTO seed_rows (id, name, note) VALUES ({i}, 'name {i}', 'note {i:08d} xxxxxx');\n")
with open(f"{work}/one/0001_seed.expand.sql", "w") as f:
    f.write(create)
    f.write("INSERT INTO seed_rows (id, name, note) VALUES\n")
    rows, size, n = [], 0, 0
    while size < 48_000_000:
        row = f"({n}, 'name {n}', 'a note of some length for row {n:08d} xxxxxxxxxxxxxx')"
        rows.append(row)
        size += len(row) + 2
        n += 1
    f.write(",\n".join(rows))
    f.write(";\n")
PY

bin=""
for candidate in "${MIGRATE_PG_BIN:-}" "$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")")" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -n "$candidate" ] && [ -x "$candidate/initdb" ]; then bin="$candidate"; break; fi
done
as_server() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp "$@"
    else
        "$@"
    fi
}
url=""
if [ "$lint_only" = false ]; then
    [ -n "$bin" ] || { echo "no PostgreSQL binaries found: use --lint-only" >&2; exit 1; }
    rm -rf "$work/pg"
    mkdir -p "$work/pg"
    [ "$(id -u)" = 0 ] && chown nobody "$work/pg"
    as_server "$bin/initdb" -D "$work/pg/data" -A trust -U postgres >/dev/null
    port=$((20000 + RANDOM % 20000))
    as_server "$bin/pg_ctl" -D "$work/pg/data" -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" \
        -l "$work/pg/log" -w start >/dev/null
    trap 'as_server "$bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true' EXIT
    url="postgres://postgres@127.0.0.1:$port"
fi

peak() { # command... -> peak RSS in KiB
    /usr/bin/time -v "$@" >/dev/null 2>"$work/time.txt" || { tail -5 "$work/time.txt" >&2; return 1; }
    awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt"
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); migrate $(git -C "$root" rev-parse --short HEAD) ($profile build)"
for name in many one; do
    file="$work/$name/0001_seed.expand.sql"
    bytes=$(stat -c %s "$file")
    lint=$(peak "$migrate" lint "$work/$name")
    line="$name: $(awk -v b="$bytes" 'BEGIN {printf "%.1f MB", b/1e6}'), lint peak $(awk -v k="$lint" -v b="$bytes" 'BEGIN {printf "%.0f MB (%.1fx)", k*1024/1e6, k*1024/b}')"
    if [ -n "$url" ]; then
        # A database of its own for each file.
        "$bin/psql" -q -d "$url/postgres?sslmode=disable" -c "CREATE DATABASE bench_$name" >/dev/null
        up=$(peak "$migrate" up --database-url "$url/bench_$name?sslmode=disable" --dir "$work/$name")
        line="$line, up peak $(awk -v k="$up" -v b="$bytes" 'BEGIN {printf "%.0f MB (%.1fx)", k*1024/1e6, k*1024/b}')"
    fi
    echo "$line"
done
