#!/usr/bin/env bash
# The online-impact benchmark: a schema change (add email_verified_at, fill it, index it) on a
# 2,000,000-row table under pgbench at 60% of each load's own maximum. By default the workload
# matrix of issue 22, each shape with the big bang, the runner's defaults and a control run (the
# load alone, as long as the defaults' change took unless --control-seconds is given), and the
# CPU the server, pgbench and the runner each took:
#   (a) point UPDATE + point SELECT by key, 4 clients   (b) the same, 16 clients
#   (c) the former default mix, 8 clients                (d) I/O-bound, shared_buffers 16MB
#   (e) hot rows the backfill writes too                 (f) with a streaming replica
# writes docs/benchmarks/online-matrix.md. `--shapes custom` runs the former single shape
# (--clients, --app-writes) with dual writes and several target= values, writing
# docs/benchmarks/online-impact.md and online-impact.svg. Starts its own scratch PostgreSQL
# clusters (the server binaries and pgbench must be installed). Run it on a quiet machine:
# anything else running distorts the figures. One to two hours for the matrix at the default
# size: the runner's defaults rest most of the time beside a load at 60%, and each control run
# lasts as long as its shape's defaults run.
#
#   scripts/bench-online.sh                                  # the matrix, 2,000,000 rows
#   scripts/bench-online.sh --rows 200000 --shapes a,c --control-seconds 20 --out /tmp/bench
#   scripts/bench-online.sh --shapes custom --rows 200000 --targets 50 --out /tmp/bench
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p migrate-bench --bin bench-online
exec target/release/bench-online "$@"
