//! Shared helpers of the CLI tests: one scratch cluster per test binary (its watchdog stops
//! it when the binary exits), one database per test, and a `migrate` command with a clean
//! environment.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use migrate_scratch::{ScratchCluster, ScratchDatabase};

pub fn cluster() -> &'static ScratchCluster {
    static CLUSTER: OnceLock<ScratchCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = ScratchCluster::start().expect("scratch cluster");
        // Which server the binary's tests run on ($MIGRATE_PG_MAJOR picks it).
        eprintln!(
            "scratch cluster: {} ({})",
            cluster.version(),
            cluster.binaries().dir().display()
        );
        cluster
    })
}

/// Whether the scratch server's build has the extension; says so when not, for the test to
/// skip.
pub fn has_extension(name: &str) -> bool {
    let found = cluster()
        .has_extension(name)
        .expect("pg_available_extensions");
    cluster().says_skipped_without(found, name)
}

pub fn database() -> ScratchDatabase {
    cluster().create_database().expect("scratch database")
}

/// `postgres://...?sslmode=disable` of a scratch database (no TLS on these clusters).
pub fn url(database: &ScratchDatabase) -> String {
    format!("{}?sslmode=disable", database.url())
}

/// Runs SQL as the superuser in `database`; returns psql's unaligned output, trimmed.
pub fn sql(database: &ScratchDatabase, query: &str) -> String {
    cluster()
        .psql(database.name(), query)
        .expect("psql")
        .trim()
        .to_owned()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

pub fn example_migrations() -> PathBuf {
    workspace().join("migrations")
}

/// `migrate` with no database variables, no colour settings and short lock settings,
/// running in the workspace.
pub fn migrate() -> Command {
    let mut command = Command::cargo_bin("migrate").expect("migrate binary");
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key == "DATABASE_URL" || key.starts_with("PG") || key.starts_with("DB_") {
            command.env_remove(key);
        }
    }
    command
        .env_remove("NO_COLOR")
        .current_dir(workspace())
        .args(["--lock-wait", "30s", "--lock-timeout", "2s"]);
    command
}

/// `migrate --database-url <db> --dir <dir> ARGS...`
pub fn migrate_on(database: &ScratchDatabase, dir: &Path) -> Command {
    let mut command = migrate();
    command
        .arg("--database-url")
        .arg(url(database))
        .arg("--dir")
        .arg(dir);
    command
}

/// A copy of the example set in a temporary folder, to edit.
pub fn copy_of_examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(example_migrations()).expect("migrations") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(output)))
}

/// Rows of the fault-test table.
pub const ROWS: i64 = 30_000;

/// A set that takes long enough to be interrupted anywhere: a table of 30,000 rows, two
/// concurrent index builds, a transactional migration and a batched backfill whose UPDATE
/// counts how often it touched each row (`n`).
pub fn write_fault_set(dir: &Path) {
    let files = [
        (
            "0001_items.sql",
            format!(
                "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v integer NOT NULL, \
                 n integer NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false);\n\
                 INSERT INTO items (id, v) SELECT g, g % 1000 FROM generate_series(1, {ROWS}) g \
                 ON CONFLICT DO NOTHING;\n\
                 -- migrate:down\nDROP TABLE IF EXISTS items;\n"
            ),
        ),
        (
            "0002_items_indexes.expand.sql",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_v ON items (v);\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS items_v_id ON items (v, id);\n\
             -- migrate:down\n\
             DROP INDEX CONCURRENTLY IF EXISTS items_v_id;\n\
             DROP INDEX CONCURRENTLY IF EXISTS items_v;\n"
                .to_owned(),
        ),
        (
            "0003_items_w.expand.sql",
            "ALTER TABLE items ADD COLUMN IF NOT EXISTS w integer;\n\
             CREATE TABLE IF NOT EXISTS audit (id bigint PRIMARY KEY, note text);\n\
             CREATE INDEX IF NOT EXISTS audit_note ON audit (note);\n\
             -- migrate:down\n\
             DROP TABLE IF EXISTS audit;\n\
             ALTER TABLE items DROP COLUMN IF EXISTS w;\n"
                .to_owned(),
        ),
        (
            "0004_items_done.backfill.sql",
            "-- migrate:backfill table=items key=id batch=500\n\
             UPDATE items SET n = n + 1, done = true WHERE NOT done;\n\
             -- migrate:down\n"
                .to_owned(),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// `pg_dump --schema-only` of a database without the runtime's own tables.
pub fn schema_of(cluster: &migrate_scratch::ScratchCluster, db: &ScratchDatabase) -> String {
    cluster
        .schema_of(db, &["public.schema_migrations*".to_owned()])
        .expect("pg_dump")
}
