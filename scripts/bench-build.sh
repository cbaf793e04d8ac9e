#!/usr/bin/env bash
# Build-time cost of migrations!(): wall time of rebuilding a crate whose migrations!() embeds
# 1,000 generated migration files, against the same crate embedding the same files with 1,000
# include_str!s. Both crates use migrate-core (print the set's size through it), so both link
# it and the difference is the macro's alone; the include_str! crate without migrate-core is
# printed too. Dependencies are built first; each figure is the median of 5 rebuilds of the
# crate itself (src/main.rs touched): wall time and CPU time (user + system, rustc's threads
# and the macro's included). The macro's rebuilds use its build cache (nothing changed); the
# "cache miss" line removes the cache before each rebuild, which is what the first build and
# a build after a migration file changed cost. Each line gives the ratio to the include_str!
# crate measured in the same run. Last, a fresh release build of each crate (non-incremental,
# as in CI) with `RUSTC_BOOTSTRAP=1 ... -Z time-passes`: rustc's `type_check_crate` time, the
# cost of type-checking the expansion. The machine's load is printed before and after:
# figures from a busy machine are not comparable with a quiet one's.
#
# usage: scripts/bench-build.sh [--release-macros]
#   --release-macros  also measure with `[profile.dev.build-override] opt-level = 3`, the
#                     setting that compiles proc macros optimised in debug builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/bench-build"
rm -rf "$work/macro" "$work/include" "$work/plain"
mkdir -p "$work/macro/src" "$work/include/src" "$work/plain/src" "$work/migrations"

python3 - "$work/migrations" <<'PY'
import sys, pathlib
out = pathlib.Path(sys.argv[1])
for i in range(1, 1001):
    body = f"""-- migrate:up
CREATE TABLE IF NOT EXISTS table_{i} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id bigint NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS table_{i}_owner_idx ON table_{i} (owner_id);
ALTER TABLE table_{i} ADD COLUMN IF NOT EXISTS note text;
ALTER TABLE table_{i} ADD CONSTRAINT table_{i}_name_len CHECK (length(name) < 200) NOT VALID;
CREATE OR REPLACE FUNCTION table_{i}_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_at := now();
    RETURN NEW;
END
$$;
CREATE OR REPLACE VIEW table_{i}_names AS SELECT id, name FROM table_{i};
COMMENT ON TABLE table_{i} IS 'generated table {i}; it''s for benchmarks';
GRANT SELECT ON table_{i}_names TO PUBLIC;
-- migrate:down
DROP VIEW IF EXISTS table_{i}_names;
DROP FUNCTION IF EXISTS table_{i}_touch();
DROP TABLE IF EXISTS table_{i};
"""
    (out / f"{i:05}_table_{i}.expand.sql").write_text(body)
PY

manifest() {
    cat <<TOML
[package]
name = "bench-$1"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
migrate-core = { path = "$root/migrate-core", default-features = false }
migrate-macros = { path = "$root/migrate-macros" }

[workspace]
$2
TOML
}

files() {
    echo 'static FILES: &[&str] = &['
    for f in "$work"/migrations/*.sql; do echo "    include_str!(\"$f\"),"; done
    echo '];'
}
{
    files
    echo 'static EMPTY: migrate_core::Migrations = migrate_core::Migrations::empty();'
    echo 'fn main() { println!("{}", FILES.len() + EMPTY.len()); }'
} > "$work/include/src/main.rs"
{
    files
    echo 'fn main() { println!("{}", FILES.len()); }'
} > "$work/plain/src/main.rs"
echo 'static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
fn main() { println!("{}", MIGRATIONS.len()); }' > "$work/macro/src/main.rs"

cache="$work/target/debug/migrate-build-cache"

median() { sort -n | sed -n 3p; }

median_rebuild() { # dir, "cold" to remove the macro's cache before each rebuild
    local walls=() cpus=() TIMEFORMAT='%R %U %S' figures
    for _ in 1 2 3 4 5; do
        touch "$1/src/main.rs"
        if [ "${2:-}" = cold ]; then rm -rf "$cache"; fi
        figures=$( { time (cd "$1" && CARGO_TARGET_DIR="$work/target" cargo build -q --offline); } 2>&1 | tail -1)
        read -r wall user sys <<<"$figures"
        walls+=("$wall")
        cpus+=("$(echo "$user + $sys" | bc)")
    done
    echo "$(printf '%s\n' "${walls[@]}" | median) $(printf '%s\n' "${cpus[@]}" | median)"
}

line() { # label, macro figures, baseline figures
    read -r mw mc <<<"$2"
    read -r bw bc_ <<<"$3"
    printf '%-34s %6.2f s (cpu %5.2f s)   vs %6.2f s (cpu %5.2f s)   difference: %+.2f s (cpu %+.2f s)   ratio %.2fx (cpu %.2fx)\n' \
        "$1" "$mw" "$mc" "$bw" "$bc_" "$(echo "$mw - $bw" | bc)" "$(echo "$mc - $bc_" | bc)" \
        "$(echo "scale=4; $mw / $bw" | bc)" "$(echo "scale=4; $mc / $bc_" | bc)"
}

type_check() { # dir: seconds rustc's type_check_crate pass takes in a fresh release build
    touch "$1/src/main.rs"
    (cd "$1" && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$work/target" \
        cargo rustc -q --offline --release -- -Z time-passes 2>&1) |
        awk '/type_check_crate$/ { print $2 + 0 }' | tail -1
}

release_type_checking() {
    for kind in macro include; do # dependencies first, so the figure is the crate's alone
        (cd "$work/$kind" && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$work/target" cargo build -q --offline --release)
    done
    local macro include
    macro=$(type_check "$work/macro")
    include=$(type_check "$work/include")
    echo "fresh release build, rustc -Z time-passes type_check_crate (one build each):"
    printf '  migrations!() %.3f s   vs include_str! %.3f s   difference: %+.3f s\n' \
        "$macro" "$include" "$(echo "$macro - $include" | bc)"
}

measure() { # label, extra manifest text
    for kind in macro include plain; do
        manifest "$kind" "$2" > "$work/$kind/Cargo.toml"
        cp "$root/Cargo.lock" "$work/$kind/Cargo.lock"
        (cd "$work/$kind" && CARGO_TARGET_DIR="$work/target" cargo build -q --offline)
        test "$(CARGO_TARGET_DIR="$work/target" cargo run -q --offline --manifest-path "$work/$kind/Cargo.toml")" = 1000
    done
    local warm cold include plain
    warm=$(median_rebuild "$work/macro")
    cold=$(median_rebuild "$work/macro" cold)
    include=$(median_rebuild "$work/include")
    plain=$(median_rebuild "$work/plain")
    echo "$1: migrations!() vs include_str! (both linking migrate-core), wall (cpu):"
    line "  migrations!(), cache hit" "$warm" "$include"
    line "  migrations!(), cache miss" "$cold" "$include"
    read -r pw pc <<<"$plain"
    printf '  include_str! without migrate-core: %.2f s (cpu %.2f s)\n' "$pw" "$pc"
}

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(rustc --version)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "1,000 files, $(cat "$work"/migrations/*.sql | wc -c) bytes; median of 5 rebuilds each"
measure "debug (default profile)" ""
if [ "${1:-}" = "--release-macros" ]; then
    measure "debug, proc macros opt=3" $'[profile.dev.build-override]\nopt-level = 3'
fi
release_type_checking
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
