//! A service with a clap command line of its own: `orders-cli serve`, and the migration
//! subcommands mounted as `orders-cli migrate ...` (the README's "Embedding migrations").

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orders_service::{MIGRATIONS, migrator_config};

/// The orders service.
#[derive(Parser)]
#[command(name = "orders-cli", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve requests.
    Serve,
    /// The database migrations.
    Migrate(migrate_cli::MigrateCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve => ExitCode::SUCCESS,
        Command::Migrate(migrate) => {
            migrate
                .run_async(migrate_cli::Embedded::new(&MIGRATIONS).config(migrator_config()))
                .await
        }
    }
}
