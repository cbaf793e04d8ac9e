//! Applying the embedded set at start-up with the library (the README's "Applying at
//! start-up" section): errors go through `?`, then the client is used again.

use std::error::Error;

use migrate_core::runtime::{Migrator, MigratorConfig, UpTo, connect};

use orders_service::MIGRATIONS;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("DATABASE_URL")?;
    let config = MigratorConfig {
        // Only for the test of a refused setting; a service keeps the defaults.
        lock_timeout: match std::env::var("LOCK_TIMEOUT_MS") {
            Ok(ms) => std::time::Duration::from_millis(ms.parse()?),
            Err(_) => MigratorConfig::default().lock_timeout,
        },
        ..MigratorConfig::default()
    };
    let client = connect(&url, &config).await?;
    // `START_UP=1`: what a replica applies as it starts, the expands before the first
    // backfill or contract; operations run the rest (`orders-service migrate up`).
    let target = if std::env::var_os("START_UP").is_some() {
        UpTo::LeadingExpands
    } else {
        UpTo::All
    };
    match Migrator::new(&MIGRATIONS, config)?.up(&client, target).await {
        Ok(report) => println!("{report}"),
        Err(failed) if failed.error().is_transient() => {
            eprintln!("will retry: {failed}");
            return Err(failed.into());
        }
        Err(failed) => return Err(failed.into()),
    }
    // The same client afterwards: the settings `up` used are gone again.
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('lock_timeout'), \
             current_setting('statement_timeout')",
            &[],
        )
        .await?;
    let (name, lock, statement): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    println!(
        "settings after up: application_name={name:?} lock_timeout={lock} statement_timeout={statement}"
    );
    Ok(())
}
