//! A service crate outside the workspace (`tests/service-crate`, path dependencies, the
//! README's embedding section followed literally) built and run for real: the embedded CLI
//! from `#[tokio::main]` with the service's own name, the library's `up` leaving the client's
//! session settings as they were, and errors through `?` reading as one message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use migrate_scratch::ScratchCluster;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn crate_dir() -> PathBuf {
    workspace_root().join("tests").join("service-crate")
}

/// Builds the service crate once (its own target folder, so it never waits for the
/// workspace's build lock) and returns the folder of its binaries.
fn binaries() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = workspace_root().join("target").join("service-crate");
        // Same dependency versions as the workspace, resolved offline.
        std::fs::copy(
            workspace_root().join("Cargo.lock"),
            crate_dir().join("Cargo.lock"),
        )
        .unwrap();
        let output = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--offline", "--bins"])
            .current_dir(crate_dir())
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("MIGRATE_MACROS_MANIFEST_DIR")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        target.join("debug")
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn cluster() -> &'static ScratchCluster {
    static CLUSTER: OnceLock<ScratchCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| ScratchCluster::start().expect("scratch cluster"))
}

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binaries().join(binary));
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && (key == "DATABASE_URL" || key.starts_with("PG"))
        {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
fn the_embedded_cli_runs_from_tokio_main_under_the_services_name() {
    let help = run("orders-service", &["--help"], &[]);
    assert!(help.status.success(), "{}", text(&help.stderr));
    let help = text(&help.stdout);
    assert!(
        help.starts_with("Orders service: its database migrations"),
        "{help}"
    );
    assert!(help.contains("Usage: orders-service"), "{help}");

    let version = run("orders-service", &["--version"], &[]);
    assert_eq!(text(&version.stdout).trim(), "orders-service 9.9.9");

    let db = cluster().create_database().unwrap();
    let url = format!("{}?sslmode=disable", db.url());
    let status = run("orders-service", &["status"], &[("DATABASE_URL", &url)]);
    let stderr = text(&status.stderr);
    assert!(status.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(text(&status.stdout).contains("pending"));
}

#[test]
fn up_through_the_library_leaves_the_clients_settings_and_errors_read_as_one_message() {
    let db = cluster().create_database().unwrap();
    let url = format!("{}?sslmode=disable", db.url());
    let applied = run("apply", &[], &[("DATABASE_URL", &url)]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let stdout = text(&applied.stdout);
    assert!(stdout.contains("applied 7 migration(s)"), "{stdout}");
    // The server's defaults (0: no timeout), not the migrator's 5 s and 15 min.
    assert!(
        stdout.contains("lock_timeout=0 statement_timeout=0"),
        "{stdout}"
    );

    // A refused setting through `?` in main: one line, the Display text.
    let refused = run(
        "apply",
        &[],
        &[("DATABASE_URL", &url), ("LOCK_TIMEOUT_MS", "0")],
    );
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert_eq!(stderr.matches("Error: ").count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("Error: invalid setting lock_timeout = 0: must be at least 1ms"),
        "{stderr}"
    );
    assert!(!stderr.contains("InvalidSetting {"), "{stderr}");

    // A statement the server rejects, through `?`: the file, line, message and SQLSTATE once,
    // no driver internals.
    let broken = cluster().create_database().unwrap();
    cluster()
        .psql(broken.name(), "CREATE TABLE users (id text PRIMARY KEY)")
        .unwrap();
    let url = format!("{}?sslmode=disable", broken.url());
    let failed = run("apply", &[], &[("DATABASE_URL", &url)]);
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(
        stderr.starts_with("Error: migrations/") || stderr.contains(".sql:"),
        "{stderr}"
    );
    assert!(stderr.contains("SQLSTATE"), "{stderr}");
    assert!(!stderr.contains("DbError"), "{stderr}");
    assert!(!stderr.contains("tuplesort.c"), "{stderr}");
    assert_eq!(stderr.matches("SQLSTATE").count(), 1, "{stderr}");
}
