//! `orders-service migrate status`, `orders-service migrate up`, ...: the service reads its
//! own first word and hands what follows `migrate` to the embedded CLI (the README's
//! "Embedding migrations" section).

use std::process::ExitCode;

use orders_service::{MIGRATIONS, migrator_config};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(word) if word == "migrate" => {
            migrate_cli::Embedded::new(&MIGRATIONS)
                .name("orders-service migrate")
                .version(env!("CARGO_PKG_VERSION"))
                .about("Orders service: its database migrations")
                .config(migrator_config())
                .run_from(args)
                .await
        }
        _ => serve().await,
    }
}

/// The service itself (here, only a word).
async fn serve() -> ExitCode {
    println!("serving orders");
    ExitCode::SUCCESS
}
