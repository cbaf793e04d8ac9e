#!/usr/bin/env bash
# Build-time cost of migrations!(): wall time of rebuilding a crate whose migrations!() embeds
# 1,000 generated migration files, against the same crate embedding the same files with 1,000
# include_str!s. Dependencies are built first; each figure is the median of 5 rebuilds of the
# crate itself (src/main.rs touched). Prints both figures and the difference.
#
# usage: scripts/bench-build.sh [--release-macros]
#   --release-macros  also measure with `[profile.dev.build-override] opt-level = 3`, the
#                     setting that compiles proc macros optimised in debug builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/bench-build"
rm -rf "$work/macro" "$work/include"
mkdir -p "$work/macro/src" "$work/include/src" "$work/migrations"

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

{
    echo 'static FILES: &[&str] = &['
    for f in "$work"/migrations/*.sql; do echo "    include_str!(\"$f\"),"; done
    echo '];'
    echo 'fn main() { println!("{}", FILES.len()); }'
} > "$work/include/src/main.rs"
echo 'static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
fn main() { println!("{}", MIGRATIONS.len()); }' > "$work/macro/src/main.rs"

median_rebuild() { # dir
    local times=()
    for _ in 1 2 3 4 5; do
        touch "$1/src/main.rs"
        local start end
        start=$(date +%s.%N)
        (cd "$1" && CARGO_TARGET_DIR="$work/target" cargo build -q --offline)
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc)")
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}

measure() { # label, extra manifest text
    for kind in macro include; do
        manifest "$kind" "$2" > "$work/$kind/Cargo.toml"
        cp "$root/Cargo.lock" "$work/$kind/Cargo.lock"
        (cd "$work/$kind" && CARGO_TARGET_DIR="$work/target" cargo build -q --offline)
        test "$(CARGO_TARGET_DIR="$work/target" cargo run -q --offline --manifest-path "$work/$kind/Cargo.toml")" = 1000
    done
    local with_macro with_include
    with_macro=$(median_rebuild "$work/macro")
    with_include=$(median_rebuild "$work/include")
    printf '%-28s migrations!(): %6.2f s   include_str!: %6.2f s   difference: %+.2f s\n' \
        "$1" "$with_macro" "$with_include" "$(echo "$with_macro - $with_include" | bc)"
}

echo "1,000 files, $(cat "$work"/migrations/*.sql | wc -c) bytes; median of 5 rebuilds each"
measure "debug (default profile)" ""
if [ "${1:-}" = "--release-macros" ]; then
    measure "debug, proc macros opt=3" $'[profile.dev.build-override]\nopt-level = 3'
fi
