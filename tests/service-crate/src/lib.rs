//! What the service's binaries share: its migration set and the settings it applies them
//! with, at start-up and from its command line alike.

use std::time::Duration;

use migrate_core::runtime::MigratorConfig;

/// The service's migrations, embedded at build time.
pub static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../../migrations");

/// The service's settings: its own history table, and an hour between an expand and its
/// contract (its replicas' connection pools recycle within the hour).
pub fn migrator_config() -> MigratorConfig {
    MigratorConfig {
        history_table: "orders_schema_history".into(),
        contract_stabilisation: Duration::from_secs(3600),
        ..MigratorConfig::default()
    }
}
