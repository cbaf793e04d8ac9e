#!/usr/bin/env bash
# Size of a service that applies its migrations at start-up (tests/startup-size: the example
# set embedded with migrations!(), Migrator::up over tokio-postgres, no CLI), built as a user
# would: `cargo build --release`, then stripped. It is built twice:
#
#   runtime only   migrate-core with `default-features = false, features = ["runtime"]`,
#                  as the README recommends for such a service: no SQL parser, no TOML;
#   with lint      migrate-core's default features (`runtime` and `lint`): what the same
#                  service linked before the parser moved behind `lint`.
#
# Each build also prints whether sqlparser is in the binary's dependency tree, and how many
# lines of the stripped binary name it (its panic locations). Release builds
# take minutes on a small machine: run it with `nice` beside other work.
#
# usage: scripts/bench-size.sh [--runtime-only]
#   --runtime-only  build only the recommended configuration
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
crate="$root/tests/startup-size"
export CARGO_TARGET_DIR="$root/target/startup-size"
work="$root/target/startup-size/bench"
mkdir -p "$work"

# The workspace's dependency versions, resolved offline (as tests/runtime_only.rs builds it).
cp "$root/Cargo.lock" "$crate/Cargo.lock"

configurations=("runtime-only")
[ "${1:-}" = "--runtime-only" ] || configurations+=("with-lint")

echo "start-up apply binary (tests/startup-size), release, stripped; $(rustc --version)"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- migrate-core migrate-macros tests/startup-size || echo ' (with uncommitted changes)')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for configuration in "${configurations[@]}"; do
    features=()
    if [ "$configuration" = "with-lint" ]; then
        features=(--features with-lint)
    fi
    cargo build --quiet --offline --release --manifest-path "$crate/Cargo.toml" "${features[@]}"
    cp "$CARGO_TARGET_DIR/release/startup-size" "$work/startup-size-$configuration"
    strip "$work/startup-size-$configuration"
    bytes=$(stat -c %s "$work/startup-size-$configuration")
    # The binary's own dependencies (the macro's, which run in the compiler, left out), and
    # the binary itself: linked sqlparser code leaves its source paths in panic locations.
    if cargo tree --quiet --offline --manifest-path "$crate/Cargo.toml" "${features[@]}" \
        -e normal,no-proc-macro | grep -q sqlparser; then
        parser="sqlparser in the dependency tree"
    else
        parser="no sqlparser in the dependency tree"
    fi
    mentions=$(grep -c sqlparser "$work/startup-size-$configuration" || true)
    parser="$parser, $mentions line(s) of the binary name it"
    printf '%-13s %10d bytes  %5.1f MiB  (%s)\n' "$configuration" "$bytes" \
        "$(echo "$bytes / 1048576" | bc -l)" "$parser"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
