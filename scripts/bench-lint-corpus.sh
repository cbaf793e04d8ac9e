#!/usr/bin/env bash
# The linter on real migrations, next to squawk: converts a public project's PostgreSQL
# migrations to our file layout, then runs `migrate lint --format json > file` (release build)
# and squawk (installed from PyPI into a venv under target/) on the same files, alternating,
# and prints for each corpus:
#   - wall time, median of N runs, on all cores and pinned to one core (taskset);
#   - peak RSS (median of the runs' maxima, from /usr/bin/time);
#   - our findings per rule and squawk's per rule;
#   - statements: total, parsed, skipped (not parsed: no rule reads their tree), classified
#     from keywords, flagged unparseable, and hidden actions (statements neither parsed, nor classified with all their actions linted, nor
#     flagged), from the `statements` object of our JSON output.
#
# usage: scripts/bench-lint-corpus.sh [--runs N] <migrations dir> [<migrations dir> ...]
#
# Layouts read (the folder given is the one holding the migrations):
#   - diesel: one sub-folder per migration with up.sql [and down.sql];
#   - prisma: one sub-folder per migration with migration.sql (up only);
#   - paired files (golang-migrate, sqlx reversible, gobuffalo/pop):
#     <version>_<name>[.<dialect>][.autocommit].{up,down}.sql; files of another dialect
#     (mysql, sqlite3, cockroach, ...) are skipped, a postgres one wins over a generic one, and
#     `.autocommit` becomes `-- migrate:no-transaction`;
#   - one file per migration: <version>_<name>.sql (dbmate's `-- migrate:up/down` markers are
#     ours) or flyway's V<version>__<name>.sql.
# Each migration becomes `<n>_<name>.sql` (n in the original order, as an expand, with its up
# and down parts); a migration whose up part holds no statement is left out and counted.
# Nothing is written outside target/bench-lint-corpus; the corpora are never committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/bench-lint-corpus"
runs=20
if [ "${1:-}" = "--runs" ]; then runs="$2"; shift 2; fi
if [ $# -eq 0 ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
mkdir -p "$work"

(cd "$root" && cargo build -q --release -p migrate-cli)
migrate="$root/target/release/migrate"
if [ ! -x "$work/venv/bin/squawk" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q squawk-cli
fi
squawk="$work/venv/bin/squawk"

echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "migrate: $(git -C "$root" rev-parse --short HEAD) (release build); $("$squawk" --version)"
echo "runs: $runs each, ours and squawk alternating; JSON output to a file"

for source in "$@"; do
    source="$(cd "$source" && pwd)"
    # The repository's name, or for an extracted folder its last two path components
    # (lemmy/migrations -> lemmy-migrations), so that two corpora never share a work folder.
    name="$(basename "$(git -C "$source" rev-parse --show-toplevel 2>/dev/null \
        || echo "$(basename "$(dirname "$source")")-$(basename "$source")")")"
    out="$work/$name"
    rm -rf "$out"
    mkdir -p "$out/migrations"
    echo
    echo "== $source"
    if commit=$(git -C "$source" rev-parse HEAD 2>/dev/null); then
        echo "repository: $(git -C "$source" remote get-url origin 2>/dev/null || echo '?') commit $commit"
    fi
    python3 - "$source" "$out/migrations" <<'PY'
import pathlib, re, sys

source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
POSTGRES = {"postgres", "postgresql", "pg"}
OTHER = {"mysql", "sqlite", "sqlite3", "cockroach", "cockroachdb", "mssql", "sqlserver", "clickhouse"}
migrations = {}  # original version -> {"name", "up", "down", "autocommit", "postgres"}

def add(version, name, part, path, dialect=None, autocommit=False):
    entry = migrations.setdefault(version, {"name": name, "up": None, "down": None,
                                            "autocommit": False, "postgres": {}})
    text = path.read_text(encoding="utf-8")
    # A postgres-specific file replaces a generic one of the same version and part.
    if entry[part] is not None and entry["postgres"].get(part) and dialect is None:
        return
    entry[part] = text
    entry["postgres"][part] = dialect is not None
    entry["autocommit"] |= autocommit

layout = None
for sub in sorted(p for p in source.iterdir() if p.is_dir()):
    if (sub / "up.sql").is_file():
        layout = "diesel"
        version, _, name = sub.name.partition("_")
        add(version, name, "up", sub / "up.sql")
        if (sub / "down.sql").is_file():
            add(version, name, "down", sub / "down.sql")
    elif (sub / "migration.sql").is_file():
        layout = "prisma"
        version, _, name = sub.name.partition("_")
        add(version, name, "up", sub / "migration.sql")
paired = re.compile(r"^(\d+)_(.+?)((?:\.[a-z0-9]+)*)\.(up|down)\.sql$")
single = re.compile(r"^(?:V)?(\d+)_{1,2}(.+)\.sql$")
for path in sorted(p for p in source.iterdir() if p.is_file()):
    m = paired.match(path.name)
    if m:
        layout = layout or "paired files"
        version, name, infix, part = m.groups()
        tags = [t for t in infix.split(".") if t]
        dialects = [t for t in tags if t in POSTGRES | OTHER]
        if any(t in OTHER for t in dialects):
            continue
        add(version, name, part, path, dialect=dialects[0] if dialects else None,
            autocommit="autocommit" in tags)
        continue
    m = single.match(path.name)
    if m:
        layout = layout or "one file per migration"
        version, name = m.groups()
        text = path.read_text(encoding="utf-8")
        up, marker, down = text.partition("-- migrate:down")
        migrations[version] = {"name": name, "up": up.replace("-- migrate:up", "", 1),
                               "down": down if marker else None, "autocommit": False}

def has_statement(sql):
    sql = re.sub(r"/\*.*?\*/", "", sql or "", flags=re.S)
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())

def order(version):
    digits = re.sub(r"\D", "", version)
    return (int(digits) if digits else -1, version)

empty = 0
written = 0
with open(out / "SOURCES.txt", "w") as sources:
    for version in sorted(migrations, key=order):
        entry = migrations[version]
        if not has_statement(entry["up"]):
            empty += 1
            continue
        written += 1
        name = re.sub(r"[^a-z0-9_]+", "_", entry["name"].lower()).strip("_") or "migration"
        body = ("-- migrate:no-transaction\n" if entry["autocommit"] else "") + "-- migrate:up\n"
        body += entry["up"].rstrip() + "\n"
        if entry["down"] is not None:
            body += "-- migrate:down\n" + entry["down"].rstrip() + "\n"
        file_name = f"{written:05}_{name}.sql"
        (out / file_name).write_text(body, encoding="utf-8")
        sources.write(f"{file_name} {version}_{entry['name']}\n")
size = sum(p.stat().st_size for p in out.glob("*.sql"))
print(f"layout: {layout}; {written} migrations converted ({size:,} bytes), "
      f"{empty} left out (no statement in the up part)")
PY

    python3 - "$migrate" "$squawk" "$out" "$runs" <<'PY'
import collections, json, os, pathlib, statistics, subprocess, sys, time

migrate, squawk, out, runs = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), int(sys.argv[4])
files = sorted(str(p) for p in (out / "migrations").glob("*.sql"))
ours_json, squawk_json = out / "migrate.json", out / "squawk.json"
tools = {
    "migrate": ([migrate, "lint", "--format", "json", str(out / "migrations")], ours_json),
    "squawk": ([squawk, "--reporter", "json", *files], squawk_json),
}

def run(command, output, cores):
    rss_file = out / "rss"
    prefix = ["taskset", "-c", "0"] if cores == 1 else []
    with open(output, "w") as sink:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *prefix, *command],
                              stdout=sink, stderr=subprocess.DEVNULL, cwd=out)
        wall = time.perf_counter() - start
    if done.returncode not in (0, 1, 3):
        sys.exit(f"{command[0]} exited with {done.returncode}")
    return wall, int(rss_file.read_text().split()[-1]) / 1024

for cores in (os.cpu_count(), 1):
    figures = collections.defaultdict(lambda: ([], []))
    for _ in range(runs):
        for tool, (command, output) in tools.items():
            wall, rss = run(command, output, cores)
            figures[tool][0].append(wall)
            figures[tool][1].append(rss)
    walls = {tool: statistics.median(w) for tool, (w, _) in figures.items()}
    rsss = {tool: statistics.median(r) for tool, (_, r) in figures.items()}
    print(f"{cores} core(s): " + "   ".join(
        f"{tool} {walls[tool]:.3f} s, {rsss[tool]:.1f} MiB" for tool in tools)
        + f"   ours/squawk: time {walls['migrate'] / walls['squawk']:.2f}x,"
        + f" memory {rsss['migrate'] / rsss['squawk']:.2f}x")

ours = json.loads(ours_json.read_text())
by_rule = collections.Counter(d["code"] for d in ours["diagnostics"])
print(f"ours: {ours['errors']} errors, {ours['warnings']} warnings; per rule: "
      + ", ".join(f"{rule} {n}" for rule, n in by_rule.most_common()))
statements = ours.get("statements")
if statements:
    print("statements: {total} total, {parsed} parsed, {skipped} skipped (not parsed: no rule "
          "reads their tree), {classified} classified from keywords, {flagged} flagged "
          "unparseable, hidden actions: {hidden}".format(
              total=statements["total"], parsed=statements["parsed"],
              skipped=statements.get("skipped", 0),
              classified=statements["classified"], flagged=statements["flagged"],
              hidden=len(statements["hidden"])))
    for place in statements["hidden"]:
        print(f"  hidden: {place['file']}:{place['line']}:{place['column']}")
else:
    print("statements: this build's JSON has no `statements` object")
theirs = json.loads(squawk_json.read_text() or "[]")
squawk_rules = collections.Counter(v.get("rule_name", "?") for v in theirs)
print(f"squawk: {len(theirs)} violations; per rule: "
      + ", ".join(f"{rule} {n}" for rule, n in squawk_rules.most_common()))
PY
done
