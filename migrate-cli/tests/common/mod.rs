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
    CLUSTER.get_or_init(|| ScratchCluster::start().expect("scratch cluster"))
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
