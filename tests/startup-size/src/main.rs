//! Applies the example set at start-up, as the README's "Applying at start-up" shows.

use migrate_core::runtime::{Migrator, MigratorConfig, UpTo, connect};

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../../migrations");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = MigratorConfig::default();
    let client = connect(&std::env::var("DATABASE_URL")?, &config).await?;
    let report = Migrator::new(&MIGRATIONS, config)?
        .up(&client, UpTo::All)
        .await?;
    println!("{report}");
    Ok(())
}
