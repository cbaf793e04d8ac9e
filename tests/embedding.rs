//! A service crate outside the workspace (`tests/service-crate`, path dependencies, the
//! README's embedding section followed literally) built and run for real: the embedded CLI
//! as `orders-service migrate ...` (`Embedded::run_from`) and mounted in the service's clap
//! command line (`MigrateCommand`), over the service's settings, without what it was built
//! without; the library's `up` leaving the client's session settings as they were, errors
//! through `?` reading as one message; and the service's own tests on `TestDatabase`.

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

/// The subcommands a `--help` lists (hidden ones are not).
fn listed_commands(help: &str) -> Vec<&str> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

fn database_url(db: &migrate_scratch::ScratchDatabase) -> String {
    format!("{}?sslmode=disable", db.url())
}

/// Rows of the service's history table, or `None` when it does not exist.
fn history_rows(db: &migrate_scratch::ScratchDatabase, table: &str) -> Option<u64> {
    let exists = cluster()
        .psql(
            db.name(),
            &format!("SELECT to_regclass('{table}') IS NOT NULL"),
        )
        .unwrap();
    if exists.trim() != "t" {
        return None;
    }
    let count = cluster()
        .psql(db.name(), &format!("SELECT count(*) FROM {table}"))
        .unwrap();
    Some(count.trim().parse().unwrap())
}

#[test]
fn the_embedded_cli_runs_under_the_services_command_path_without_what_it_lacks() {
    // `orders-service migrate ...`: the service strips its own word, `run_from` takes the rest.
    let help = run("orders-service", &["migrate", "--help"], &[]);
    assert!(help.status.success(), "{}", text(&help.stderr));
    let help = text(&help.stdout);
    assert!(
        help.starts_with("Orders service: its database migrations"),
        "{help}"
    );
    assert!(help.contains("Usage: orders-service migrate"), "{help}");
    let listed = listed_commands(&help);
    assert!(
        listed.contains(&"up") && listed.contains(&"new"),
        "{listed:?}"
    );
    // Built without migrate-cli's `check` feature: not offered.
    for absent in ["check", "squash"] {
        assert!(!listed.contains(&absent), "{absent} listed: {listed:?}");
    }
    // Hints in the help name the service's command path, never `migrate` alone.
    assert!(
        help.contains("`orders-service migrate up --help` lists them all"),
        "{help}"
    );
    assert!(!help.contains("`migrate "), "{help}");
    let up_help = run("orders-service", &["migrate", "up", "--help"], &[]);
    let up_help = text(&up_help.stdout);
    assert!(
        up_help.contains("`orders-service migrate plan`"),
        "{up_help}"
    );
    assert!(!up_help.contains("`migrate "), "{up_help}");

    // What is left of `baseline` without scratch clusters says so.
    let baseline = text(&run("orders-service", &["migrate", "baseline", "--help"], &[]).stdout);
    assert!(baseline.contains("Required here"), "{baseline}");
    // The service's own words still work.
    assert_eq!(
        text(&run("orders-service", &[], &[]).stdout).trim(),
        "serving orders"
    );

    // Asked for anyway: a clear usage error, not a listed command that exits 2.
    let check = run("orders-service", &["migrate", "check"], &[]);
    assert_eq!(check.status.code(), Some(2));
    assert!(
        text(&check.stderr).contains("built without `check`"),
        "{}",
        text(&check.stderr)
    );

    let version = run("orders-service", &["migrate", "--version"], &[]);
    assert_eq!(text(&version.stdout).trim(), "orders-service migrate 9.9.9");

    let db = cluster().create_database().unwrap();
    let url = database_url(&db);
    let status = run(
        "orders-service",
        &["migrate", "status"],
        &[("DATABASE_URL", &url)],
    );
    let stderr = text(&status.stderr);
    assert!(status.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(text(&status.stdout).contains("pending"));

    // A hint printed by a command names the command path too.
    let partial = run(
        "orders-service",
        &["migrate", "up", "--to", "2"],
        &[("DATABASE_URL", &url)],
    );
    assert!(partial.status.success(), "{}", text(&partial.stderr));
    let stdout = text(&partial.stdout);
    assert!(
        stdout.contains("`orders-service migrate up` applies them"),
        "{stdout}"
    );
}

#[test]
fn hints_in_errors_name_the_services_command_path() {
    let db = cluster().create_database().unwrap();
    let url = database_url(&db);
    let env = [("DATABASE_URL", url.as_str())];
    let up = run("orders-service", &["migrate", "up", "--to", "2"], &env);
    assert!(up.status.success(), "{}", text(&up.stderr));
    // Version 1 drifted: as if its file had been edited after it ran.
    cluster()
        .psql(
            db.name(),
            "UPDATE orders_schema_history SET checksum = md5(checksum::text) WHERE version = 1",
        )
        .unwrap();
    let status = run("orders-service", &["migrate", "status"], &env);
    assert_eq!(status.status.code(), Some(4));
    let stderr = text(&status.stderr);
    assert!(
        stderr.contains("`orders-service migrate repair`"),
        "{stderr}"
    );
    assert!(!stderr.contains("`migrate "), "{stderr}");
    // The runtime's own errors, through the CLI, too.
    let rerun = run(
        "orders-service",
        &["migrate", "backfill", "rerun", "4"],
        &env,
    );
    let stderr = text(&rerun.stderr);
    assert!(!rerun.status.success());
    assert!(stderr.contains("`orders-service migrate "), "{stderr}");
    assert!(!stderr.contains("`migrate "), "{stderr}");
}

#[test]
fn the_services_settings_are_the_base_and_flags_override_only_what_they_give() {
    let db = cluster().create_database().unwrap();
    let url = database_url(&db);
    let env = [("DATABASE_URL", url.as_str())];
    // The service's config: history table `orders_schema_history`, an hour of contract
    // stabilisation. `up` without flags keeps both: the contract (7) is refused.
    let up = run("orders-service", &["migrate", "up"], &env);
    let stderr = text(&up.stderr);
    assert_eq!(up.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("contract migration 7"), "{stderr}");
    assert!(stderr.contains("stabilis"), "{stderr}");
    assert_eq!(history_rows(&db, "orders_schema_history"), Some(6));
    assert_eq!(history_rows(&db, "schema_migrations"), None);

    // A flag overrides its own setting only: the history table stays the service's.
    let up = run(
        "orders-service",
        &["migrate", "up", "--contract-stabilisation", "0s"],
        &env,
    );
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert_eq!(history_rows(&db, "orders_schema_history"), Some(7));
    assert_eq!(history_rows(&db, "schema_migrations"), None);

    // And the history table flag overrides the code's (on a database of its own: the
    // runtime refuses a second history table beside one of ours, as a likely typo).
    let db = cluster().create_database().unwrap();
    let url = database_url(&db);
    let other = run(
        "orders-service",
        &[
            "migrate",
            "up",
            "--to",
            "1",
            "--history-table",
            "public.other_history",
        ],
        &[("DATABASE_URL", &url)],
    );
    assert!(other.status.success(), "{}", text(&other.stderr));
    assert_eq!(history_rows(&db, "public.other_history"), Some(1));
    assert_eq!(history_rows(&db, "orders_schema_history"), None);
}

#[test]
fn folder_commands_need_dir_and_database_commands_refuse_it() {
    let folder = tempfile_dir("new");
    // Without --dir: the build machine's folder is not this machine's.
    let new = run(
        "orders-service",
        &["migrate", "new", "add_notes", "--phase", "expand"],
        &[],
    );
    assert_eq!(new.status.code(), Some(2));
    let stderr = text(&new.stderr);
    assert!(stderr.contains("pass --dir"), "{stderr}");
    assert!(stderr.contains("build machine"), "{stderr}");

    // With it: numbered after the embedded set (1-7), not 0001.
    let dir = folder.to_str().unwrap();
    let new = run(
        "orders-service",
        &[
            "migrate",
            "new",
            "add_notes",
            "--phase",
            "expand",
            "--dir",
            dir,
        ],
        &[],
    );
    assert!(new.status.success(), "{}", text(&new.stderr));
    assert!(folder.join("0008_add_notes.expand.sql").is_file());
    // After the folder's own files when they go further.
    std::fs::write(folder.join("0012_later.expand.sql"), "SELECT 1;\n").unwrap();
    let new = run(
        "orders-service",
        &["migrate", "new", "more", "--phase", "expand", "--dir", dir],
        &[],
    );
    assert!(new.status.success(), "{}", text(&new.stderr));
    assert!(folder.join("0013_more.expand.sql").is_file());

    // Database commands always use the embedded set: --dir is refused, nothing is touched.
    let db = cluster().create_database().unwrap();
    let url = database_url(&db);
    for command in ["up", "status", "repair"] {
        let refused = run(
            "orders-service",
            &["migrate", command, "--dir", dir],
            &[("DATABASE_URL", &url)],
        );
        let stderr = text(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("this binary embeds its migrations (versions 1-7)"),
            "{command}: {stderr}"
        );
        assert!(
            stderr.contains("folder commands only"),
            "{command}: {stderr}"
        );
    }
    assert_eq!(history_rows(&db, "orders_schema_history"), None);
    std::fs::remove_dir_all(&folder).unwrap();
}

#[test]
fn the_migrate_subcommand_mounts_in_the_services_clap_cli() {
    let help = run("orders-cli", &["migrate", "--help"], &[]);
    assert!(help.status.success(), "{}", text(&help.stderr));
    let help = text(&help.stdout);
    assert!(help.contains("Usage: orders-cli migrate"), "{help}");
    let listed = listed_commands(&help);
    assert!(listed.contains(&"status"), "{listed:?}");
    assert!(!listed.contains(&"check"), "{listed:?}");
    assert!(!help.contains("`migrate "), "{help}");
    // The parent's own commands are still there.
    let top = text(&run("orders-cli", &["--help"], &[]).stdout);
    assert!(listed_commands(&top).contains(&"serve"), "{top}");

    let db = cluster().create_database().unwrap();
    let url = database_url(&db);
    let env = [("DATABASE_URL", url.as_str())];
    let up = run("orders-cli", &["migrate", "up", "--to", "2"], &env);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let stdout = text(&up.stdout);
    assert!(
        stdout.contains("`orders-cli migrate up` applies them"),
        "{stdout}"
    );
    // Under the service's config.
    assert_eq!(history_rows(&db, "orders_schema_history"), Some(2));

    let refused = run("orders-cli", &["migrate", "status", "--dir", "/tmp"], &env);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn the_services_own_tests_get_a_migrated_database_each() {
    // tests/service-crate/tests/orders.rs, through migrate_scratch::TestDatabase.
    binaries();
    let output = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--offline"])
        .current_dir(crate_dir())
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target").join("service-crate"),
        )
        .env_remove("MIGRATE_MACROS_MANIFEST_DIR")
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");
}

/// A new empty folder under the target folder.
fn tempfile_dir(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target")
        .join("service-crate")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

/// Issue 25, start-up apply in the service: four replicas start at once with
/// `UpTo::LeadingExpands`; each exits 0, the expands before the backfill are applied once, the
/// backfill and everything after it are left pending and named; operations' `up` then applies
/// the rest.
#[test]
fn four_replicas_starting_at_once_apply_only_the_leading_expands() {
    let db = cluster().create_database().unwrap();
    let url = format!("{}?sslmode=disable", db.url());
    let replicas: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                run("apply", &[], &[("DATABASE_URL", &url), ("START_UP", "1")])
            })
        })
        .collect();
    let mut applied_in_all = 0;
    for replica in replicas {
        let output = replica.join().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains(
                "left pending: 0004_email_normalized.backfill.sql (a backfill, for operations to run)"
            ),
            "{stdout}"
        );
        applied_in_all += stdout
            .split("applied ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    assert_eq!(applied_in_all, 3, "0001-0003 applied once in all");
    let versions = cluster()
        .psql(
            db.name(),
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
        )
        .unwrap();
    assert_eq!(versions.trim(), "1,2,3");
    let rest = run("apply", &[], &[("DATABASE_URL", &url)]);
    assert!(rest.status.success(), "{}", text(&rest.stderr));
    assert!(
        text(&rest.stdout).contains("applied 4 migration(s)"),
        "{}",
        text(&rest.stdout)
    );
}
