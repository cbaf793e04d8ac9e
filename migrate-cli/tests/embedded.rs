//! `run_with(Source::Embedded(..))`, what `run_embedded` calls: a service binary that embeds
//! its migrations with `migrations!()` exposes the same commands over that set.

mod common;

use std::process::ExitCode;

use common::*;
use migrate_cli::{Source, run_with};

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
