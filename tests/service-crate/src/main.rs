//! The service's migration commands: `orders-service status`, `orders-service up`, ...
//! (the README's "Embedding migrations" section).

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../../migrations");

#[tokio::main]
async fn main() -> std::process::ExitCode {
    migrate_cli::Embedded::new(&MIGRATIONS)
        .name("orders-service")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Orders service: its database migrations")
        .run_async()
        .await
}
