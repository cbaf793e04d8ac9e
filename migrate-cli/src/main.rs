//! `migrate`: see `migrate --help` and `migrate <command> --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    migrate_cli::run_dir("migrations")
}
