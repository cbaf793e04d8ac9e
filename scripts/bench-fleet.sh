#!/usr/bin/env bash
# `migrate fleet` against one `migrate` process per target: `fleet status` and a small
# rollout (a table and a CONCURRENTLY index) over 100 and 500 tenant-schema targets on a
# scratch cluster; see migrate-cli/examples/bench_fleet.rs for what is measured. Both sides
# run the same (debug) `migrate` binary in the same run, so the ratio is comparable even on
# a busy machine; the load is printed before and after. The output is written to
# bench/results/fleet.txt as well.
#
# usage: scripts/bench-fleet.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build -q -p migrate-cli --bin migrate --example bench_fleet
mkdir -p bench/results
"$root/target/debug/examples/bench_fleet" "$root/target/debug/migrate" | tee bench/results/fleet.txt
