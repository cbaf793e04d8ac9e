#!/usr/bin/env bash
# What a share of one CPU, taken by something else on the machine, costs an application's
# latency: the question behind issue 22's p99 target on a machine whose cores the server, the
# load generator and the backfill share.
#
# Starts a scratch PostgreSQL cluster (initdb into a temp dir, a unix socket; as `nobody`
# when run as root), builds shape (a)'s table (2,000,000 rows by default), measures
# pgbench's maximum rate of its point SELECT + point UPDATE with 4 clients, then runs it at
# 60% of that (`--rate`, per-transaction logs) beside, in turn:
#   - nothing (the load alone);
#   - a process outside PostgreSQL spinning ON ms then sleeping OFF ms, for several ON/OFF
#     pairs: the same CPU share in short and in long bursts;
#   - a session updating 1,000 rows by key range, then sleeping 23 ms (a backfill's batches
#     at a fixed pace).
# Each disturbance runs --rounds times, interleaved. Prints, per run, pgbench's p50, p99 and
# the share of its transactions over 10 ms, and the disturber's own CPU share.
#
#   scripts/bench-cpu-share.sh                       # 2,000,000 rows, 30 s runs, 2 rounds
#   scripts/bench-cpu-share.sh --rows 200000 --seconds 10 --rounds 1
set -euo pipefail

rows=2000000
seconds=30
rounds=2
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

for tool in initdb pg_ctl pgbench psql python3; do
    command -v "$tool" >/dev/null || { echo "bench-cpu-share: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/bench-cpu-share.XXXXXX)
chmod 0777 "$work"
as_server() {
    if [ "$(id -u)" = 0 ]; then su nobody -s /bin/bash -c "$*"; else bash -c "$*"; fi
}
stop() {
    as_server "pg_ctl -D '$work/data' -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop EXIT

as_server "initdb -D '$work/data' -U postgres -A trust >/dev/null"
cat >>"$work/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work'
port = 5432
fsync = on
synchronous_commit = on
shared_buffers = '256MB'
max_wal_size = '4GB'
EOF
as_server "pg_ctl -D '$work/data' -l '$work/server.log' -w start >/dev/null"
export PGHOST=$work PGPORT=5432 PGUSER=postgres PGDATABASE=postgres

psql -qX -v ON_ERROR_STOP=1 <<EOF
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL,
                    balance bigint NOT NULL DEFAULT 0, email_verified_at timestamptz);
INSERT INTO users (id, email, created_at)
SELECT g, 'user' || g || '@example.com', now() - g * interval '1 second' FROM generate_series(1, $rows) g;
EOF
psql -qX -c "VACUUM ANALYZE users"

cat >"$work/app.sql" <<EOF
\\set id random(1, $rows)
SELECT email, balance FROM users WHERE id = :id;
UPDATE users SET balance = balance + 1 WHERE id = :id;
EOF
cat >"$work/batches.sql" <<EOF
\\set k random(0, $((rows / 1000 - 1)))
UPDATE users SET email_verified_at = created_at WHERE id > :k * 1000 AND id <= :k * 1000 + 1000;
\\sleep 23 ms
EOF

max=$(pgbench -n -f "$work/app.sql" -c 4 -j 2 -T 10 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
rate=$(python3 -c "print(int($max * 0.6))")
echo "bench-cpu-share: $rows rows, $(nproc) CPUs, $(psql -AtX -c 'SHOW server_version'); load: 4 clients, max $max tx/s, runs at $rate (60%), ${seconds}s a run"
printf '%-34s %8s %8s %10s %12s\n' "beside the load" "p50 ms" "p99 ms" "over 10 ms" "its CPU"

# spin ON OFF SECONDS: burns a CPU for ON ms, sleeps OFF ms; prints the CPU share it took.
spin() {
    python3 - "$1" "$2" "$3" <<'EOF'
import sys, time
on, off, seconds = float(sys.argv[1]) / 1000, float(sys.argv[2]) / 1000, float(sys.argv[3])
end = time.time() + seconds
while time.time() < end:
    start = time.time()
    while time.time() - start < on:
        pass
    time.sleep(off)
print(f"{time.process_time() / seconds * 100:.0f}% of a CPU")
EOF
}

# run LABEL KIND [ARGS]: the load for $seconds beside the disturbance; one line of figures.
run() {
    local label=$1 kind=$2 out=$work/run
    rm -rf "$out"; mkdir "$out"
    local disturber=""
    case "$kind" in
        spin) spin "$3" "$4" $((seconds + 2)) >"$out/cpu" & disturber=$! ;;
        batches)
            (cd "$out" && pgbench -n -f "$work/batches.sql" -c 1 -j 1 -T $((seconds + 2)) >batches.out 2>&1) &
            disturber=$! ;;
    esac
    (cd "$out" && pgbench -n -f "$work/app.sql" -c 4 -j 2 -R "$rate" -T "$seconds" -l >app.out 2>&1)
    [ -n "$disturber" ] && wait "$disturber"
    local cpu="-"
    case "$kind" in
        spin) cpu=$(cat "$out/cpu") ;;
        batches) cpu="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out/batches.out") batches" ;;
    esac
    cat "$out"/pgbench_log.* | awk '{print $3}' | sort -n >"$out/latency"
    awk -v label="$label" -v cpu="$cpu" '
        { v[NR] = $1; if ($1 > 10000) over++ }
        END {
            printf "%-34s %8.1f %8.1f %9.2f%% %12s\n", label, v[int(NR / 2)] / 1000,
                v[int(NR * 0.99)] / 1000, 100 * over / NR, cpu
        }' "$out/latency"
}

for round in $(seq "$rounds"); do
    run "nothing (the load alone)" none
    run "spin 2 ms / sleep 18 ms" spin 2 18
    run "spin 10 ms / sleep 90 ms" spin 10 90
    run "spin 2 ms / sleep 5 ms" spin 2 5
    run "spin 10 ms / sleep 23 ms" spin 10 23
    run "spin 50 ms / sleep 115 ms" spin 50 115
    run "UPDATE 1,000 rows / sleep 23 ms" batches
done
