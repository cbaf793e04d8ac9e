//! `run_with(Source::Embedded(..))`, what `run_embedded` calls: a service binary that embeds
//! its migrations with `migrations!()` exposes the same commands over that set; `Embedded`
//! with the service's settings, `run_from` with the words after the service's own, and
//! `MigrateCommand` mounted in a service's clap command line; `--dir` on database commands
//! refused, folder commands needing it.

mod common;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use common::*;
use migrate_cli::{Embedded, Source, run_with};
use migrate_core::runtime::MigratorConfig;

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");

#[test]
fn an_embedded_set_runs_the_same_commands() {
    let db = database();
    let run = |args: &[&str]| {
        let mut argv = vec!["service".to_owned(), "--database-url".to_owned(), url(&db)];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        run_with(Source::Embedded(&MIGRATIONS), argv)
    };
    assert_eq!(run(&["up", "--to", "4"]), ExitCode::SUCCESS);
    assert_eq!(sql(&db, "SELECT count(*) FROM schema_migrations"), "4");
    assert_eq!(run(&["status"]), ExitCode::SUCCESS);
    assert_eq!(run(&["up"]), ExitCode::SUCCESS);
    assert_eq!(sql(&db, "SELECT max(version) FROM schema_migrations"), "7");
    // The same history seen by the `migrate` binary reading the folder: no drift.
    migrate_on(&db, &example_migrations())
        .arg("status")
        .assert()
        .success();
    // Usage errors keep clap's exit code.
    assert_eq!(run(&["frobnicate"]), ExitCode::from(2));
}

/// The service's settings as `Embedded::config` takes them: a history table of its own and
/// an hour of contract stabilisation.
fn service_config() -> MigratorConfig {
    MigratorConfig {
        history_table: "service_history".into(),
        contract_stabilisation: Duration::from_secs(3600),
        ..MigratorConfig::default()
    }
}

fn table_exists(db: &migrate_scratch::ScratchDatabase, table: &str) -> bool {
    sql(db, &format!("SELECT to_regclass('{table}') IS NOT NULL")) == "t"
}

#[test]
fn the_services_config_is_the_base_and_a_flag_overrides_only_its_own_setting() {
    let db = database();
    let run = |args: &[&str]| {
        let mut argv = vec!["service".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv.extend(["--database-url".to_owned(), url(&db)]);
        Embedded::new(&MIGRATIONS)
            .config(service_config())
            .run_args(argv.into_iter().map(OsString::from).collect())
    };
    // The code's hour holds the contract (7) back: a flag not given resets nothing.
    assert_eq!(run(&["up"]), ExitCode::from(1));
    assert_eq!(sql(&db, "SELECT max(version) FROM service_history"), "6");
    assert!(!table_exists(&db, "schema_migrations"));
    // Given, the flag wins over the code for its setting only.
    assert_eq!(
        run(&["up", "--contract-stabilisation", "0s"]),
        ExitCode::SUCCESS
    );
    assert_eq!(sql(&db, "SELECT max(version) FROM service_history"), "7");
    assert!(!table_exists(&db, "schema_migrations"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_from_takes_the_words_after_the_services_own() {
    let db = database();
    // `orders-service migrate up --to 3`: the service hands over what follows `migrate`.
    let code = Embedded::new(&MIGRATIONS)
        .name("orders-service migrate")
        .config(service_config())
        .run_from(["up", "--to", "3", "--database-url", &url(&db)])
        .await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(sql(&db, "SELECT max(version) FROM service_history"), "3");
    // Without arguments: a usage error, as clap gives for a missing subcommand.
    let none: [&str; 0] = [];
    assert_eq!(
        Embedded::new(&MIGRATIONS).run_from(none).await,
        ExitCode::from(2)
    );
}

/// A service's own clap command line, with the migration subcommands mounted.
#[derive(Debug, clap::Parser)]
#[command(name = "orders-service")]
struct ServiceCli {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ServiceCommand {
    /// Serve requests.
    Serve,
    /// The database migrations.
    Migrate(migrate_cli::MigrateCommand),
}

#[test]
fn the_migrate_command_mounts_in_a_services_clap_cli() {
    use clap::{CommandFactory, Parser};
    ServiceCli::command().debug_assert();
    let db = database();
    let parsed = ServiceCli::try_parse_from([
        "orders-service",
        "migrate",
        "up",
        "--to",
        "2",
        "--database-url",
        &url(&db),
    ])
    .expect("parses");
    let ServiceCommand::Migrate(migrate) = parsed.command else {
        panic!("{parsed:?}");
    };
    let code = migrate.run(Embedded::new(&MIGRATIONS).config(service_config()));
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(sql(&db, "SELECT max(version) FROM service_history"), "2");
    // The set alone runs under the defaults.
    let other = database();
    let ServiceCommand::Migrate(migrate) = ServiceCli::try_parse_from([
        "orders-service",
        "migrate",
        "up",
        "--database-url",
        &url(&other),
    ])
    .expect("parses")
    .command
    else {
        panic!("not migrate");
    };
    assert_eq!(migrate.run(&MIGRATIONS), ExitCode::SUCCESS);
    assert_eq!(
        sql(&other, "SELECT max(version) FROM schema_migrations"),
        "7"
    );
    // Its options and subcommands are the parent's to parse and to refuse.
    let error = ServiceCli::try_parse_from(["orders-service", "migrate", "frobnicate"])
        .expect_err("unknown subcommand");
    assert_eq!(error.kind(), clap::error::ErrorKind::InvalidSubcommand);
    let help = ServiceCli::command()
        .find_subcommand_mut("migrate")
        .expect("mounted")
        .render_long_help()
        .to_string();
    assert!(help.contains("status"), "{help}");
}

#[test]
fn database_commands_of_an_embedded_set_refuse_dir_and_touch_nothing() {
    let db = database();
    let folder = copy_of_examples();
    // Edit an applied file in the folder: were --dir honoured, `repair` would record its
    // checksum, one the binary does not have.
    let run = |args: &[&str]| {
        let mut argv = vec!["service".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv.extend(["--database-url".to_owned(), url(&db)]);
        run_with(Source::Embedded(&MIGRATIONS), argv)
    };
    assert_eq!(run(&["up", "--to", "2"]), ExitCode::SUCCESS);
    let first = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().contains("0001_"))
        .expect("0001");
    let mut text = std::fs::read_to_string(&first).unwrap();
    text.push_str("\n-- edited\n");
    std::fs::write(&first, text).unwrap();
    let checksums = || {
        sql(
            &db,
            "SELECT string_agg(checksum::text, ',' ORDER BY version) FROM schema_migrations",
        )
    };
    let before = checksums();
    let dir = folder.path().to_str().unwrap();
    for command in [
        &["up", "--dir", dir][..],
        &["status", "--dir", dir],
        &["repair", "--dir", dir],
        &["--dir", dir, "repair"],
        &["plan", "--layout", "migrate"],
    ] {
        assert_eq!(run(command), ExitCode::from(2), "{command:?}");
    }
    assert_eq!(checksums(), before);
    assert_eq!(sql(&db, "SELECT max(version) FROM schema_migrations"), "2");
    // Without --dir they use the embedded set: no drift.
    assert_eq!(run(&["status"]), ExitCode::SUCCESS);
}

#[test]
fn new_in_an_embedded_binary_needs_dir_and_numbers_after_the_embedded_set() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let mut argv = vec!["service"];
        argv.extend_from_slice(args);
        run_with(Source::Embedded(&MIGRATIONS), argv)
    };
    // The folder the set was built from exists here, but is not this binary's to write.
    let before = std::fs::read_dir(example_migrations()).unwrap().count();
    assert_eq!(
        run(&["new", "add_notes", "--phase", "expand"]),
        ExitCode::from(2)
    );
    assert_eq!(
        std::fs::read_dir(example_migrations()).unwrap().count(),
        before
    );
    for command in [&["lint"][..], &["squash", "--to", "2"], &["check"]] {
        assert_eq!(run(command), ExitCode::from(2), "{command:?}");
    }

    assert_eq!(
        run(&["new", "add_notes", "--phase", "expand", "--dir", dir]),
        ExitCode::SUCCESS
    );
    assert!(folder.path().join("0008_add_notes.expand.sql").is_file());
    // A contract may finish an expand of the embedded set.
    assert_eq!(
        run(&[
            "new",
            "drop_old",
            "--phase",
            "contract",
            "--requires",
            "5",
            "--dir",
            dir
        ]),
        ExitCode::SUCCESS
    );
    assert!(folder.path().join("0009_drop_old.contract.sql").is_file());
    std::fs::write(folder.path().join("0020_later.expand.sql"), "SELECT 1;\n").unwrap();
    assert_eq!(
        run(&["new", "more", "--phase", "backfill", "--dir", dir]),
        ExitCode::SUCCESS
    );
    assert!(folder.path().join("0021_more.backfill.sql").is_file());
    // A folder given as lint's argument is enough.
    assert_eq!(
        run(&["lint", example_migrations().to_str().unwrap()]),
        ExitCode::SUCCESS
    );
}
