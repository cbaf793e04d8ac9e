#!/usr/bin/env bash
# The online-impact benchmark: a schema change (add email_verified_at, fill it, index it) on a
# 2,000,000-row table under pgbench at 60% of the machine's maximum, as a big bang, with dual
# writes + our backfill, through our runner with its defaults and with several target= values.
# Starts its own scratch PostgreSQL (the server binaries and pgbench must be installed);
# writes docs/benchmarks/online-impact.md and online-impact.svg. Run it on a quiet machine:
# anything else running distorts the figures. About 10-15 minutes at the default size.
#
#   scripts/bench-online.sh                     # the default run
#   scripts/bench-online.sh --rows 200000 --targets 50 --out /tmp/bench   # a quick check
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p migrate-bench --bin bench-online
exec target/release/bench-online "$@"
