//! A service binary that embeds the example migrations at build time and exposes the
//! `migrate` subcommands over them:
//!
//! ```sh
//! cargo run -p migrate-cli --example service -- status
//! cargo run -p migrate-cli --example service -- up --dry-run
//! ```
//!
//! A real service would run `up` at start-up or as a deploy step with the same binary it
//! ships, so the set it applies is exactly the set it was built with.

use std::process::ExitCode;

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");

fn main() -> ExitCode {
    migrate_cli::run_embedded(&MIGRATIONS)
}
