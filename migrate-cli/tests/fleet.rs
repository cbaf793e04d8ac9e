//! `migrate fleet`: rollouts over databases of two scratch clusters and over tenant schemas,
//! the stop at the first failure, resuming, and bad input (unreachable, duplicate, a glob
//! matching nothing, drift), each named and harming no other target.

mod common;

use std::path::Path;
use std::process::{Command as StdCommand, Stdio};

use common::{cluster, json, migrate, stderr, stdout};
use migrate_scratch::{ScratchCluster, ScratchDatabase};

/// An expand creating a table with rows, an expand adding a column, a batched backfill and
/// a CONCURRENTLY index: every execution mode of the runtime.
fn write_set(dir: &Path) {
    let files = [
        (
            "0001_accounts.expand.sql",
            "CREATE TABLE IF NOT EXISTS accounts (id bigint PRIMARY KEY, email text NOT NULL);\n\
             INSERT INTO accounts (id, email) SELECT g, 'User' || g || '@Example.com' \
             FROM generate_series(1, 120) g ON CONFLICT DO NOTHING;\n\
             -- migrate:down\nDROP TABLE IF EXISTS accounts;\n",
        ),
        (
            "0002_accounts_email_lower.expand.sql",
            "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS email_lower text;\n\
             -- migrate:down\nALTER TABLE accounts DROP COLUMN IF EXISTS email_lower;\n",
        ),
        (
            "0003_accounts_email_lower.backfill.sql",
            "-- migrate:backfill table=accounts key=id batch=50 delay=0\n\
             UPDATE accounts SET email_lower = lower(email) WHERE email_lower IS NULL;\n\
             -- migrate:down\n",
        ),
        (
            "0004_accounts_email_lower_index.expand.sql",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_lower ON accounts (email_lower);\n\
             -- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS accounts_email_lower;\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

const VERSIONS: &str = "1,2,3,4";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("migrations")).unwrap();
        write_set(&dir.path().join("migrations"));
        Fixture { dir }
    }

    fn migrations(&self) -> std::path::PathBuf {
        self.dir.path().join("migrations")
    }

    /// Writes the targets file; returns its path.
    fn targets(&self, file: &str, lines: &[String]) -> std::path::PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    fn fleet(&self, targets: &Path, args: &[&str]) -> std::process::Output {
        let mut command = migrate();
        command
            .arg("--dir")
            .arg(self.migrations())
            .arg("--format")
            .arg("json")
            .arg("fleet")
            .args(args)
            .arg("--targets")
            .arg(targets);
        command.output().unwrap()
    }
}

fn url_in(db: &ScratchDatabase) -> String {
    format!("{}?sslmode=disable", db.url())
}

fn history(cluster: &ScratchCluster, db: &ScratchDatabase, table: &str) -> String {
    cluster
        .psql(
            db.name(),
            &format!(
                "SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM {table}"
            ),
        )
        .unwrap()
        .trim()
        .to_owned()
}

fn query(cluster: &ScratchCluster, db: &ScratchDatabase, sql: &str) -> String {
    cluster.psql(db.name(), sql).unwrap().trim().to_owned()
}

fn has_history(cluster: &ScratchCluster, db: &ScratchDatabase, schema: &str) -> bool {
    query(
        cluster,
        db,
        &format!("SELECT to_regclass('\"{schema}\".schema_migrations') IS NOT NULL"),
    ) == "t"
}

fn applied(document: &serde_json::Value) -> u64 {
    document["summary"]["applied"].as_u64().unwrap()
}

fn states(document: &serde_json::Value) -> Vec<(String, String)> {
    document["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The migrated table of one target is complete: every row backfilled, the index valid.
fn assert_migrated(cluster: &ScratchCluster, db: &ScratchDatabase, schema: &str) {
    assert_eq!(
        query(
            cluster,
            db,
            &format!(
                "SELECT count(*) FILTER (WHERE email_lower = lower(email)) || '/' || count(*) \
                 FROM \"{schema}\".accounts"
            ),
        ),
        "120/120"
    );
    assert_eq!(
        query(
            cluster,
            db,
            &format!(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = \
                 to_regclass('\"{schema}\".accounts_email_lower')"
            ),
        ),
        "t"
    );
}

#[test]
fn done_when_two_clusters_forty_databases_and_twelve_tenant_schemas() {
    let fixture = Fixture::new();
    let second = ScratchCluster::start().expect("second scratch cluster");
    let clusters = [cluster(), &second];
    let databases: Vec<(usize, ScratchDatabase)> = (0..40)
        .map(|i| (i % 2, clusters[i % 2].create_database().unwrap()))
        .collect();
    let mut lines = vec!["# forty shards over two clusters".to_owned(), String::new()];
    for (i, (_, db)) in databases.iter().enumerate() {
        lines.push(format!("shard-{i:02} {}", url_in(db)));
    }
    let targets = fixture.targets("shards.txt", &lines);

    let output = fixture.fleet(&targets, &["up", "--parallel", "8", "--canary", "2"]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let document = json(&output);
    assert_eq!(applied(&document), 160);
    assert_eq!(document["summary"]["done"], 40);
    // Rollout order is file order.
    let order: Vec<String> = states(&document).into_iter().map(|(t, _)| t).collect();
    let expected: Vec<String> = (0..40).map(|i| format!("shard-{i:02}")).collect();
    assert_eq!(order, expected);
    for (c, db) in &databases {
        assert_eq!(
            history(clusters[*c], db, "public.schema_migrations"),
            VERSIONS
        );
        assert_migrated(clusters[*c], db, "public");
    }
    let again = fixture.fleet(&targets, &["up", "--parallel", "8", "--canary", "2"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(applied(&json(&again)), 0);

    let status = fixture.fleet(&targets, &["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status = json(&status);
    assert_eq!(status["summary"]["by_state"]["up_to_date"], 40);
    assert!(
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["applied_up_to"] == 4)
    );

    // One database with twelve tenant schemas (and one schema the glob does not match),
    // rolled by two fleet runs at once: every migration exactly once in every schema.
    let tenants = second.create_database().unwrap();
    let mut create = String::from("CREATE SCHEMA other;");
    for i in 0..12 {
        create.push_str(&format!("CREATE SCHEMA tenant_{i:02};"));
    }
    second.psql(tenants.name(), &create).unwrap();
    let tenant_targets = fixture.targets("tenants.txt", &[format!("tenants {}", url_in(&tenants))]);
    // Before the rollout: every schema reads as all pending, none as an error.
    let before = fixture.fleet(&tenant_targets, &["status", "--schemas", "tenant_*"]);
    assert!(
        before.status.success(),
        "{}{}",
        stdout(&before),
        stderr(&before)
    );
    assert_eq!(json(&before)["summary"]["by_state"]["pending"], 12);
    let args = [
        "up",
        "--schemas",
        "tenant_*",
        "--parallel",
        "8",
        "--canary",
        "2",
    ];
    let spawn = || {
        let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("migrate"));
        for (key, _) in std::env::vars() {
            if key == "DATABASE_URL" || key.starts_with("PG") || key.starts_with("DB_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(common::workspace())
            .args(["--lock-wait", "60s", "--lock-timeout", "2s", "--dir"])
            .arg(fixture.migrations())
            .args(["--format", "json", "fleet"])
            .args(args)
            .arg("--targets")
            .arg(&tenant_targets)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().unwrap()
    };
    let (first, racing) = (spawn(), spawn());
    let (first, racing) = (
        first.wait_with_output().unwrap(),
        racing.wait_with_output().unwrap(),
    );
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    assert!(
        racing.status.success(),
        "{}{}",
        stdout(&racing),
        stderr(&racing)
    );
    assert_eq!(applied(&json(&first)) + applied(&json(&racing)), 12 * 4);
    for i in 0..12 {
        let schema = format!("tenant_{i:02}");
        assert_eq!(
            history(&second, &tenants, &format!("{schema}.schema_migrations")),
            VERSIONS
        );
        assert_migrated(&second, &tenants, &schema);
    }
    let labels: Vec<String> = states(&json(&first)).into_iter().map(|(t, _)| t).collect();
    assert_eq!(labels[0], "tenants/tenant_00");
    assert_eq!(labels.len(), 12);
    // Other schemas are never touched.
    assert!(!has_history(&second, &tenants, "other"));
    assert!(!has_history(&second, &tenants, "public"));
    assert_eq!(
        query(
            &second,
            &tenants,
            "SELECT to_regclass('public.accounts') IS NULL"
        ),
        "t"
    );
    let again = fixture.fleet(&tenant_targets, &args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(applied(&json(&again)), 0);
}

/// `n` fresh databases of the shared cluster, named db1..dbn in a targets file.
fn shards(fixture: &Fixture, n: usize) -> (Vec<ScratchDatabase>, std::path::PathBuf) {
    let databases: Vec<ScratchDatabase> = (0..n)
        .map(|_| cluster().create_database().unwrap())
        .collect();
    let lines: Vec<String> = databases
        .iter()
        .enumerate()
        .map(|(i, db)| format!("db{} {}", i + 1, url_in(db)))
        .collect();
    let targets = fixture.targets("fleet.txt", &lines);
    (databases, targets)
}

#[test]
fn a_failure_stops_the_rollout_leaves_later_targets_untouched_and_up_resumes_after_the_fix() {
    let fixture = Fixture::new();
    let (databases, targets) = shards(&fixture, 5);
    // A conflicting object on db3: an `accounts` table of another shape, so the first
    // migration's INSERT fails.
    query(
        cluster(),
        &databases[2],
        "CREATE TABLE accounts (id integer PRIMARY KEY)",
    );
    let output = fixture.fleet(&targets, &["up", "--parallel", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let document = json(&output);
    assert_eq!(
        states(&document),
        [
            ("db1", "done"),
            ("db2", "done"),
            ("db3", "failed"),
            ("db4", "not started"),
            ("db5", "not started"),
        ]
        .map(|(t, s)| (t.to_owned(), s.to_owned()))
    );
    let failure = &document["error"]["failures"][0];
    assert_eq!(failure["target"], "db3");
    assert_eq!(document["targets"][2]["error"], failure["error"]);
    assert!(
        failure["error"].as_str().unwrap().contains("42703"),
        "{failure}"
    );
    for db in &databases[3..] {
        assert!(
            !has_history(cluster(), db, "public"),
            "a later target was touched"
        );
    }

    // The human summary names the failed target and its error.
    let mut human = migrate();
    let human = human
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["fleet", "up", "--parallel", "1", "--targets"])
        .arg(&targets)
        .output()
        .unwrap();
    assert_eq!(human.status.code(), Some(1));
    assert!(
        stderr(&human).contains("rollout stopped: db3:"),
        "{}",
        stderr(&human)
    );

    query(cluster(), &databases[2], "DROP TABLE accounts");
    let fixed = fixture.fleet(&targets, &["up", "--parallel", "1"]);
    assert!(fixed.status.success(), "{}", stderr(&fixed));
    let document = json(&fixed);
    let applied_per_target: Vec<usize> = document["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["applied"].as_array().unwrap().len())
        .collect();
    assert_eq!(applied_per_target, [0, 0, 4, 4, 4]);
    for db in &databases {
        assert_eq!(history(cluster(), db, "public.schema_migrations"), VERSIONS);
    }
}

#[test]
fn a_failed_canary_keeps_every_other_target_from_starting() {
    let fixture = Fixture::new();
    let (databases, targets) = shards(&fixture, 6);
    query(
        cluster(),
        &databases[1],
        "CREATE TABLE accounts (id integer)",
    );
    // Eight at once would start all six without the canary rule.
    let output = fixture.fleet(&targets, &["up", "--parallel", "8", "--canary", "2"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let document = json(&output);
    let states = states(&document);
    // The other canary ran beside it: it finished, or stopped after its current migration.
    assert!(
        matches!(states[0].1.as_str(), "done" | "stopped"),
        "{states:?}"
    );
    assert_eq!(states[1].1, "failed");
    assert!(
        states[2..].iter().all(|(_, s)| s == "not started"),
        "{states:?}"
    );
    for db in &databases[2..] {
        assert!(!has_history(cluster(), db, "public"));
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_target_is_named_with_no_password_and_harms_no_other() {
    let fixture = Fixture::new();
    let (databases, _) = shards(&fixture, 2);
    let targets = fixture.targets(
        "fleet.txt",
        &[
            format!("db1 {}", url_in(&databases[0])),
            format!(
                "ghost postgres://deploy:s3cret-pw@127.0.0.1:{}/app?sslmode=disable&connect_timeout=2",
                closed_port()
            ),
            format!("db3 {}", url_in(&databases[1])),
        ],
    );
    let up = fixture.fleet(&targets, &["up"]);
    assert_eq!(up.status.code(), Some(1));
    let document = json(&up);
    let failures = document["error"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["target"], "ghost");
    assert_eq!(failures[0]["kind"], "unreachable");
    for db in &databases {
        assert!(!has_history(cluster(), db, "public"), "nothing may run");
    }

    let status = fixture.fleet(&targets, &["status"]);
    assert_eq!(status.status.code(), Some(1));
    let document = json(&status);
    assert_eq!(
        states(&document),
        [
            ("db1", "pending"),
            ("ghost", "unreachable"),
            ("db3", "pending")
        ]
        .map(|(t, s)| (t.to_owned(), s.to_owned()))
    );
    // Unnamed, a target shows as user@host:port/db.
    let unnamed = fixture.targets(
        "unnamed.txt",
        &[format!(
            "postgres://deploy:s3cret-pw@127.0.0.1:{}/app?sslmode=disable&connect_timeout=2",
            closed_port()
        )],
    );
    let mut human = migrate();
    let human = human
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["fleet", "status", "--targets"])
        .arg(&unnamed)
        .output()
        .unwrap();
    assert_eq!(human.status.code(), Some(1));
    assert!(
        stdout(&human).contains("deploy@127.0.0.1:"),
        "{}",
        stdout(&human)
    );
    for output in [&up, &status, &human] {
        let text = stdout(output) + &stderr(output);
        assert!(!text.contains("s3cret"), "password shown:\n{text}");
    }
}

#[test]
fn a_duplicate_target_is_refused_naming_both_lines_before_anything_runs() {
    let fixture = Fixture::new();
    let (databases, _) = shards(&fixture, 2);
    let targets = fixture.targets(
        "fleet.txt",
        &[
            url_in(&databases[0]),
            format!("# comment\nsecond {}", url_in(&databases[1])),
            // The same database, another spelling.
            format!("again {}&connect_timeout=5", url_in(&databases[0])),
        ],
    );
    let output = fixture.fleet(&targets, &["up"]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = json(&output)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("fleet.txt:4:"), "{message}");
    assert!(message.contains("line 1"), "{message}");
    for db in &databases {
        assert!(!has_history(cluster(), db, "public"));
    }
}

#[test]
fn a_schema_glob_matching_nothing_on_a_database_is_named_and_harms_no_other() {
    let fixture = Fixture::new();
    let (databases, targets) = shards(&fixture, 2);
    query(
        cluster(),
        &databases[0],
        "CREATE SCHEMA tenant_a; CREATE SCHEMA \"Tenant_B\"",
    );
    let output = fixture.fleet(&targets, &["up", "--schemas", "tenant_*"]);
    assert_eq!(output.status.code(), Some(1));
    let document = json(&output);
    let failures = document["error"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["target"], "db2");
    assert_eq!(failures[0]["kind"], "no_matching_schema");
    assert!(failures[0]["error"].as_str().unwrap().contains("tenant_*"));
    assert!(!has_history(cluster(), &databases[0], "tenant_a"));

    // A glob matching a name that needs quoting: rolled in that schema only.
    let quoted = fixture.targets("quoted.txt", &[format!("db1 {}", url_in(&databases[0]))]);
    let output = fixture.fleet(&quoted, &["up", "--schemas", "Tenant_?"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(states(&json(&output))[0].0, "db1/Tenant_B");
    assert_eq!(
        history(cluster(), &databases[0], "\"Tenant_B\".schema_migrations"),
        VERSIONS
    );
    assert!(!has_history(cluster(), &databases[0], "tenant_a"));
}

#[test]
fn a_drifted_target_is_named_and_nothing_runs_anywhere() {
    let fixture = Fixture::new();
    let (databases, targets) = shards(&fixture, 3);
    let middle = fixture.targets("middle.txt", &[format!("db2 {}", url_in(&databases[1]))]);
    assert!(fixture.fleet(&middle, &["up"]).status.success());
    query(
        cluster(),
        &databases[1],
        "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 2",
    );
    let output = fixture.fleet(&targets, &["up"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let document = json(&output);
    let failures = document["error"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["target"], "db2");
    assert_eq!(failures[0]["kind"], "drifted");
    assert!(!has_history(cluster(), &databases[0], "public"));
    assert!(!has_history(cluster(), &databases[2], "public"));

    let status = fixture.fleet(&targets, &["status"]);
    assert_eq!(status.status.code(), Some(4));
    let document = json(&status);
    assert_eq!(document["targets"][1]["state"], "drifted");
    assert_eq!(document["targets"][1]["drifted"], serde_json::json!([2]));
}

#[test]
fn verify_and_backfill_read_every_target_and_migrate_toml_names_the_targets() {
    let fixture = Fixture::new();
    let (databases, _) = shards(&fixture, 2);
    std::fs::write(
        fixture.migrations().join("migrate.toml"),
        "[fleet]\ntargets = \"../fleet.txt\"\nparallel = 2\n",
    )
    .unwrap();
    let mut up = migrate();
    let up = up
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["--format", "json", "fleet", "up"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(applied(&json(&up)), 8);
    // Rows written in the old shape after the backfill: verify finds them on that target.
    query(
        cluster(),
        &databases[1],
        "INSERT INTO accounts (id, email) VALUES (1000, 'Late@Example.com')",
    );
    let mut verify = migrate();
    let verify = verify
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["--format", "json", "fleet", "verify"])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1), "{}", stderr(&verify));
    let document = json(&verify);
    assert_eq!(document["targets"][0]["remaining"], 0);
    assert_eq!(document["targets"][1]["remaining"], 1);
    let mut backfill = migrate();
    let backfill = backfill
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["--format", "json", "fleet", "backfill"])
        .output()
        .unwrap();
    assert!(backfill.status.success(), "{}", stderr(&backfill));
    let document = json(&backfill);
    assert_eq!(document["targets"][0]["backfills"][0]["rows_done"], 120);
    assert_eq!(document["targets"][0]["paused"], false);
}

static EXAMPLES: migrate_core::Migrations = migrate_macros::migrations!("../migrations");

#[test]
fn run_embedded_exposes_the_fleet_commands_and_gates_run_on_each_target() {
    let fixture = Fixture::new();
    let (databases, targets) = shards(&fixture, 2);
    let run = |args: &[&str]| {
        let mut argv: Vec<String> = vec!["service".into(), "fleet".into()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv.extend(["--targets".into(), targets.display().to_string()]);
        migrate_cli::run_with(migrate_cli::Source::Embedded(&EXAMPLES), argv)
    };
    // The example set ends with a contract: its gates (expand applied, backfill verified)
    // are evaluated on each target.
    assert_eq!(run(&["up"]), std::process::ExitCode::SUCCESS);
    for db in &databases {
        assert_eq!(
            query(cluster(), db, "SELECT max(version) FROM schema_migrations"),
            "7"
        );
    }
    assert_eq!(run(&["status"]), std::process::ExitCode::SUCCESS);
}

mod library {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use migrate_core::fleet::{
        Fleet, FleetError, FleetEvent, TargetError, TargetList, TargetState,
    };
    use migrate_core::runtime::MigratorConfig;

    use super::*;

    fn set(dir: &Path, files: &[(&str, &str)]) -> migrate_core::Migrations {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let checked = migrate_core::check_dir(dir, "migrations").unwrap();
        assert!(
            !checked.has_errors(),
            "{:?}",
            checked.errors().collect::<Vec<_>>()
        );
        checked.migrations(&dir.to_string_lossy())
    }

    fn config() -> MigratorConfig {
        MigratorConfig {
            lock_timeout: Duration::from_secs(5),
            ..MigratorConfig::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_in_flight_finishes_its_current_migration_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        // The first migration waits for an advisory lock named after its database, which the
        // test holds for the slow target only.
        let migrations = set(
            dir.path(),
            &[
                (
                    "0001_gate.expand.sql",
                    "SELECT pg_advisory_xact_lock(hashtext(current_database()));\n\
                     CREATE TABLE IF NOT EXISTS accounts (id bigint PRIMARY KEY, email text NOT NULL);\n\
                     INSERT INTO accounts (id, email) VALUES (1, 'a') ON CONFLICT DO NOTHING;\n\
                     -- migrate:down\nDROP TABLE IF EXISTS accounts;\n",
                ),
                (
                    "0002_second.expand.sql",
                    "CREATE TABLE IF NOT EXISTS second (id bigint PRIMARY KEY);\n\
                     -- migrate:down\nDROP TABLE IF EXISTS second;\n",
                ),
            ],
        );
        let slow = cluster().create_database().unwrap();
        let failing = cluster().create_database().unwrap();
        query(cluster(), &failing, "CREATE TABLE accounts (id integer)");
        // Both targets wait in their first migration until the test lets them go: the
        // failing one once the slow one has started its first migration, the slow one once
        // the failure is in.
        let hold = |db: &ScratchDatabase| {
            let url = url_in(db);
            async move {
                let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                holder
                    .execute("SELECT pg_advisory_lock(hashtext(current_database()))", &[])
                    .await
                    .unwrap();
                holder
            }
        };
        let (slow_holder, failing_holder) = (hold(&slow).await, hold(&failing).await);
        let targets = TargetList::from_urls([
            (Some("slow"), url_in(&slow).as_str()),
            (Some("failing"), url_in(&failing).as_str()),
        ])
        .unwrap();
        let slow_started = Arc::new(tokio::sync::Notify::new());
        let failed = Arc::new(tokio::sync::Notify::new());
        let (on_start, on_failure) = (Arc::clone(&slow_started), Arc::clone(&failed));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let fleet = Fleet::new(&migrations, config(), targets)
            .unwrap()
            .parallel(2)
            .unwrap()
            .with_events(Box::new(move |event| match event {
                FleetEvent::MigrationStarted {
                    target, version, ..
                } => {
                    log.lock().unwrap().push(format!("{target} {version}"));
                    if *target == "slow" && *version == 1 {
                        on_start.notify_one();
                    }
                }
                FleetEvent::TargetFinished { run } if run.state == TargetState::Failed => {
                    on_failure.notify_one();
                }
                _ => {}
            }));
        let unlock = "SELECT pg_advisory_unlock(hashtext(current_database()))";
        let release = tokio::spawn(async move {
            slow_started.notified().await;
            failing_holder.execute(unlock, &[]).await.unwrap();
            failed.notified().await;
            slow_holder.execute(unlock, &[]).await.unwrap();
        });
        let failed = fleet.up().await.unwrap_err();
        release.await.unwrap();
        let FleetError::RolloutStopped { failure } = &failed.error else {
            panic!("{}", failed.error);
        };
        assert_eq!(failure.target, "failing");
        assert_eq!(
            failure
                .error
                .runtime()
                .and_then(|e| e.sql_state())
                .map(|s| s.code().to_owned()),
            Some("42703".to_owned())
        );
        let slow_run = &failed.report.targets[0];
        assert_eq!(slow_run.state, TargetState::Stopped);
        assert_eq!(slow_run.applied.len(), 1);
        assert_eq!(history(cluster(), &slow, "schema_migrations"), "1");
        assert!(seen.lock().unwrap().contains(&"slow 1".to_owned()));
        assert!(!seen.lock().unwrap().contains(&"slow 2".to_owned()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_past_its_timeout_fails_and_its_statement_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let migrations = set(
            dir.path(),
            &[(
                "0001_slow.expand.sql",
                "SELECT pg_sleep(60);\n-- migrate:down\n",
            )],
        );
        let db = cluster().create_database().unwrap();
        let targets = TargetList::from_urls([(Some("sleepy"), url_in(&db).as_str())]).unwrap();
        let fleet = Fleet::new(&migrations, config(), targets)
            .unwrap()
            .target_timeout(Duration::from_secs(2));
        let failed = fleet.up().await.unwrap_err();
        let FleetError::RolloutStopped { failure } = &failed.error else {
            panic!("{}", failed.error);
        };
        assert!(
            matches!(failure.error, TargetError::TimedOut { .. }),
            "{}",
            failure.error
        );
        // Without the cancel the server would sleep on for a minute.
        let sleeping = || {
            query(
                cluster(),
                &db,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' \
                 AND state = 'active'",
            )
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sleeping() != "0" {
            assert!(
                std::time::Instant::now() < deadline,
                "the statement still runs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(history(cluster(), &db, "schema_migrations"), "");
    }
}

/// `script` gives the command a terminal; skipped where it is not installed.
#[test]
fn the_live_view_shows_on_a_terminal_and_not_in_a_pipe() {
    if StdCommand::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to give the command a terminal");
        return;
    }
    let fixture = Fixture::new();
    let (databases, targets) = shards(&fixture, 3);
    let command = format!(
        "{} --dir {} fleet up --parallel 2 --targets {}",
        assert_cmd::cargo::cargo_bin("migrate").display(),
        fixture.migrations().display(),
        targets.display()
    );
    let output = StdCommand::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stdout(&output));
    let terminal = stdout(&output);
    assert!(terminal.contains("targets done"), "{terminal}");
    for db in &databases {
        assert_eq!(history(cluster(), db, "public.schema_migrations"), VERSIONS);
    }
    // In a pipe: the table and the summary only.
    let piped = fixture.fleet(&targets, &["up"]);
    let mut human = migrate();
    let human = human
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["fleet", "up", "--targets"])
        .arg(&targets)
        .output()
        .unwrap();
    assert!(piped.status.success() && human.status.success());
    assert!(
        !stderr(&human).contains("targets done"),
        "{}",
        stderr(&human)
    );
    assert!(
        stdout(&human).contains("3 target(s): 3 done"),
        "{}",
        stdout(&human)
    );
}

#[test]
fn migrate_toml_fleet_table_is_checked_and_the_linter_accepts_it() {
    let fixture = Fixture::new();
    let toml = fixture.migrations().join("migrate.toml");
    std::fs::write(&toml, "[fleet]\ntargets = \"fleet.txt\"\nparalel = 4\n").unwrap();
    let mut status = migrate();
    let status = status
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["fleet", "status"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    assert!(
        stderr(&status).contains("migrate.toml: [fleet]: unknown key `paralel`"),
        "{}",
        stderr(&status)
    );
    let mut lint = migrate();
    lint.arg("lint")
        .arg(fixture.migrations())
        .assert()
        .success();
    // No targets anywhere: a usage error saying where they come from.
    std::fs::write(&toml, "[fleet]\nparallel = 4\n").unwrap();
    let mut none = migrate();
    let none = none
        .arg("--dir")
        .arg(fixture.migrations())
        .args(["fleet", "up"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("--targets FILE"),
        "{}",
        stderr(&none)
    );
}
