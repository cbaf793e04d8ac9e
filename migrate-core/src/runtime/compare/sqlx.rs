//! Services on sqlx (the `sqlx` feature): [`DualWrite::modern_sqlx`] runs the modern write
//! inside the caller's `sqlx::Transaction<'_, Postgres>`, with the same protocol as
//! [`DualWrite::modern`] (savepoint, local bounds, flag cache, queueing in the caller's
//! transaction): both drive one implementation through `CallerTransaction`.
//!
//! # The migrator beside a sqlx pool: one URL, one more connection
//!
//! The migrator runs on tokio-postgres. A service on sqlx gives it a connection of its own
//! from the same `DATABASE_URL` ([`connect()`](crate::runtime::connect())), for the run only: `up`
//! holds the migration lock, session settings and the history on one server session,
//! which a pool's connection cannot promise between two `acquire`s. What it costs:
//!
//! - one connection while `up` runs, closed when it is dropped, on top of the pool's
//!   `max_connections`; replicas starting together each open one and, with nothing to
//!   apply, hold it for a few queries ([`UpTo::LeadingExpands`](crate::runtime::UpTo) never runs a
//!   backfill, so the backfill monitor and workers of
//!   [`Migrator::with_backfill_sessions`](crate::runtime::Migrator::with_backfill_sessions) are
//!   never opened at start-up);
//! - the same connection can create the reconcile queue ([`DualWrite::ensure_queue`])
//!   before it is dropped.
//!
//! ```no_run
//! # async fn start(database_url: &str, migrations: &migrate_core::Migrations) -> Result<(), Box<dyn std::error::Error>> {
//! use migrate_core::runtime::{connect, DualWriteConfig, Migrator, MigratorConfig, UpTo};
//! let config = MigratorConfig::default();
//! let migrator = Migrator::new(migrations, config.clone())?;
//! let dual = migrator.dual_write("users.email_normalized", 4, DualWriteConfig::default())?;
//! {
//!     let client = connect(database_url, &config).await?; // dropped at the end of the block
//!     migrator.up(&client, UpTo::LeadingExpands).await?;
//!     dual.ensure_queue(&client).await?;
//! }
//! let pool = sqlx::PgPool::connect(database_url).await?;
//! let mut transaction = pool.begin().await?;
//! sqlx::query("UPDATE users SET email = $2 WHERE id = $1")
//!     .bind(7_i64)
//!     .bind("Ada@Example.com")
//!     .execute(&mut *transaction)
//!     .await?;
//! let modern = sqlx::query("UPDATE users SET email_normalized = lower($2) WHERE id = $1")
//!     .bind(7_i64)
//!     .bind("Ada@Example.com");
//! dual.modern_sqlx(&mut transaction, "7", modern).await;
//! transaction.commit().await?;
//! # Ok(()) }
//! ```

use ::sqlx::postgres::{PgArguments, PgConnection, Postgres};
use ::sqlx::query::Query;
use ::sqlx::{Executor, Row, Transaction};
use tokio_postgres::error::SqlState;

use crate::runtime::compare::dual_write::{
    CallerTransaction, DualWrite, ModernWrite, WriteFailure,
};

impl From<::sqlx::Error> for WriteFailure {
    fn from(error: ::sqlx::Error) -> WriteFailure {
        match error.as_database_error() {
            Some(db) => {
                let code = db.code().map(|code| code.into_owned());
                WriteFailure {
                    text: format!("{} ({})", db.message(), code.as_deref().unwrap_or("?")),
                    sql_state: code.map(|code| SqlState::from_code(&code)),
                }
            }
            None => WriteFailure::other(error.to_string()),
        }
    }
}

/// A sqlx transaction with the caller's modern statement (taken when it runs).
struct SqlxTransaction<'t, 'c, 'q> {
    transaction: &'t mut Transaction<'c, Postgres>,
    statement: Option<Query<'q, Postgres, PgArguments>>,
}

impl CallerTransaction for SqlxTransaction<'_, '_, '_> {
    async fn simple(&mut self, sql: &str) -> Result<Option<(String, String)>, WriteFailure> {
        // Several statements in one round trip: sqlx sends `raw_sql` as a simple query.
        let connection: &mut PgConnection = self.transaction;
        let rows = connection.fetch_all(::sqlx::raw_sql(sql)).await?;
        match rows.first() {
            Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?))),
            None => Ok(None),
        }
    }

    async fn relation_exists(&mut self, quoted: &str) -> Result<bool, WriteFailure> {
        Ok(
            ::sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(quoted)
                .fetch_one(&mut **self.transaction)
                .await?,
        )
    }

    async fn read_flag(&mut self, select: &str, flag: &str) -> Result<Option<bool>, WriteFailure> {
        Ok(::sqlx::query_scalar::<_, bool>(select)
            .bind(flag)
            .fetch_optional(&mut **self.transaction)
            .await?)
    }

    async fn modern_statement(&mut self) -> Result<u64, WriteFailure> {
        let statement = self
            .statement
            .take()
            .ok_or_else(|| WriteFailure::other("the modern statement already ran"))?;
        Ok(statement
            .execute(&mut **self.transaction)
            .await?
            .rows_affected())
    }

    async fn queue(
        &mut self,
        insert: &str,
        version: i64,
        key: &str,
        flag: &str,
        error: &str,
    ) -> Result<(), WriteFailure> {
        ::sqlx::query(insert)
            .bind(version)
            .bind(key)
            .bind(flag)
            .bind(error)
            .execute(&mut **self.transaction)
            .await?;
        Ok(())
    }
}

impl DualWrite {
    /// [`DualWrite::modern`] inside a sqlx transaction: `statement` (a
    /// `sqlx::query(...).bind(...)`) runs after the caller's legacy write, in a savepoint
    /// under this write's bounds; a failure is undone alone and `key` queued in the same
    /// transaction, so it commits exactly when the legacy write does. Whatever happens,
    /// `transaction` is left usable for the caller's commit.
    pub async fn modern_sqlx<'q>(
        &self,
        transaction: &mut Transaction<'_, Postgres>,
        key: &str,
        statement: Query<'q, Postgres, PgArguments>,
    ) -> ModernWrite {
        let mut caller = SqlxTransaction {
            transaction,
            statement: Some(statement),
        };
        self.modern_in(&mut caller, key).await
    }
}
