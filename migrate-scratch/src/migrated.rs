//! [`TestDatabase`]: what `#[sqlx::test(migrations = "...")]` gives sqlx users, for a set
//! embedded with `migrations!()`: a fresh database per test, the set applied.

use migrate_core::Migrations;
use migrate_core::runtime::{
    ConnectError, Failed, Migrator, MigratorConfig, RuntimeError, UpReport, UpTo, connect,
};
use tokio_postgres::Client;

use crate::{ScratchCluster, ScratchDatabase, ScratchError};

/// A throwaway database of the test binary's shared cluster ([`ScratchCluster::shared`])
/// with a migration set applied through the runtime's own [`Migrator::up`], as the service
/// applies it in production (advisory lock, history table, backfills, contract gates), and
/// a client connected to it. Dropping it drops the database.
///
/// One per test, so tests run in parallel without seeing each other's rows:
///
/// ```no_run
/// # // no_run: needs the PostgreSQL server binaries.
/// static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
///
/// #[tokio::test]
/// async fn orders_start_pending() {
///     let db = migrate_scratch::TestDatabase::migrated(&MIGRATIONS).await.unwrap();
///     db.client()
///         .execute("INSERT INTO users (email) VALUES ('a@example.com')", &[])
///         .await
///         .unwrap();
///     // Or hand the URL to the pool the service uses: `db.url()`.
/// }
/// ```
///
/// Needs the PostgreSQL server binaries (see [`crate::PgBinaries`]); the cluster starts on
/// first use, blocking for a second or two, and stops when the test binary exits.
#[derive(Debug)]
pub struct TestDatabase {
    database: ScratchDatabase,
    url: String,
    client: Client,
    report: UpReport,
}

/// Why a [`TestDatabase`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestDatabaseError {
    /// The scratch cluster did not start, or the database could not be created.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// The settings were refused before anything ran.
    #[error(transparent)]
    Settings(#[from] RuntimeError),
    /// The connection to the new database failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A migration failed; the report says what was applied before it.
    #[error(transparent)]
    Up(#[from] Box<Failed<UpReport>>),
}

impl TestDatabase {
    /// A new database with every migration of `migrations` applied, under
    /// [`MigratorConfig::default`].
    pub async fn migrated(migrations: &Migrations) -> Result<TestDatabase, TestDatabaseError> {
        TestDatabase::migrated_with(migrations, MigratorConfig::default()).await
    }

    /// [`TestDatabase::migrated`] under the service's own settings (its history table, its
    /// contract stabilisation: a test then sees what production would refuse).
    pub async fn migrated_with(
        migrations: &Migrations,
        config: MigratorConfig,
    ) -> Result<TestDatabase, TestDatabaseError> {
        let migrator = Migrator::new(migrations, config.clone())?;
        let database = ScratchCluster::shared()?.create_database()?;
        // The scratch cluster has no TLS.
        let url = format!("{}?sslmode=disable", database.url());
        let client = match connect(&url, &config).await {
            Ok(client) => client,
            Err(error) => {
                drop_database(database.name());
                return Err(error.into());
            }
        };
        // From here a failure drops the database with the value, as the end of a test does.
        let mut test_database = TestDatabase {
            database,
            url,
            client,
            report: UpReport::default(),
        };
        test_database.report = migrator
            .up(&test_database.client, UpTo::All)
            .await
            .map_err(Box::new)?;
        Ok(test_database)
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable`: for the service's own pool
    /// or client (trust authentication, no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client connected to the database (the one the migrations ran on, its session
    /// settings as they were before).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database's name, unique in the cluster.
    pub fn name(&self) -> &str {
        self.database.name()
    }

    /// What [`Migrator::up`] applied.
    pub fn report(&self) -> &UpReport {
        &self.report
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_database(self.database.name());
    }
}

/// Drops a database of the shared cluster. WITH (FORCE) (PostgreSQL 13 and later) ends the
/// fixture's client and any pool the test left open. A failure leaves a database in a
/// cluster that goes away with the process anyway.
fn drop_database(name: &str) {
    if let Ok(cluster) = ScratchCluster::shared() {
        // A scratch database name: ASCII letters, digits and `_`, safe to quote verbatim.
        let _ = cluster.psql(
            crate::SUPERUSER,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        );
    }
}
