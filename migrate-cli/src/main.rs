//! `migrate`: see `migrate --help` and docs/cli.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    migrate_cli::run_dir("migrations")
}
