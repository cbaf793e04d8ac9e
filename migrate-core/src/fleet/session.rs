//! A target's dedicated connection: opening it, finding the database's schemas, putting a
//! schema first on `search_path`, and cancelling its statement when the target times out.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::error::TargetError;
use super::targets::DatabaseTarget;
use super::{Fleet, Target};
use crate::runtime::state::history::History;
use crate::runtime::{ConnectError, Migrator, RuntimeError, TableName, connect_with};

impl Fleet<'_> {
    /// A dedicated connection to `database`, named as the migrator's sessions are.
    pub(crate) async fn connect(&self, database: &DatabaseTarget) -> Result<Client, TargetError> {
        let mut options = database.options().clone();
        options
            .config
            .application_name(&self.config.application_name);
        connect_with(options)
            .await
            .map_err(TargetError::Unreachable)
    }

    /// The targets of one database: the database itself, or its schemas matching the glob
    /// in name order (bytewise, whatever the collation). None matching is an error.
    pub(crate) async fn targets_of(
        &self,
        index: usize,
        client: &Client,
    ) -> Result<Vec<Target>, TargetError> {
        let database = &self.targets.databases()[index];
        let Some(glob) = &self.schemas else {
            return Ok(vec![Target::new(database, index, None)]);
        };
        let rows = client
            .query("SELECT nspname::text FROM pg_catalog.pg_namespace", &[])
            .await
            .map_err(|error| {
                TargetError::Runtime(crate::runtime::RuntimeError::Database {
                    action: "listing the schemas",
                    error,
                })
            })?;
        let mut schemas: Vec<String> = rows
            .iter()
            .map(|row| row.get::<_, String>(0))
            .filter(|schema| glob.matches(schema))
            .collect();
        if schemas.is_empty() {
            return Err(TargetError::NoMatchingSchema {
                glob: glob.as_str().to_owned(),
            });
        }
        schemas.sort();
        Ok(schemas
            .into_iter()
            .map(|schema| Target::new(database, index, Some(schema)))
            .collect())
    }
}

/// The session's `search_path` as the server set it, before any schema was put first.
pub(crate) async fn base_search_path(client: &Client) -> Result<String, TargetError> {
    let row = client
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .map_err(|error| {
            TargetError::Runtime(crate::runtime::RuntimeError::Database {
                action: "reading search_path",
                error,
            })
        })?;
    Ok(row.get(0))
}

/// Puts `schema` first on the session's `search_path`, before `base` (what the server
/// configured, so extensions in `public` still resolve). The name is bound and quoted by the
/// server (`quote_ident`), never spliced.
pub(crate) async fn enter_schema(
    client: &Client,
    schema: &str,
    base: &str,
) -> Result<(), TargetError> {
    client
        .query_one(
            "SELECT set_config('search_path', CASE $2 WHEN '' THEN quote_ident($1) \
                 ELSE quote_ident($1) || ', ' || $2 END, false)",
            &[&schema, &base],
        )
        .await
        .map_err(|error| {
            TargetError::Runtime(crate::runtime::RuntimeError::Database {
                action: "putting the schema first on search_path",
                error,
            })
        })?;
    Ok(())
}

/// The server process of a connection, for [`cancel`].
pub(crate) async fn backend_pid(client: &Client) -> Option<i32> {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()
        .map(|row| row.get(0))
}

/// Cancels the running statement of `pid` from a connection of its own: the timed-out
/// target's own connection is gone, and its server process would otherwise run its
/// statement to the end (it only notices a closed client when it next writes).
pub(crate) async fn cancel(fleet: &Fleet<'_>, database: &DatabaseTarget, pid: i32) {
    let result: Result<(), ConnectError> = async {
        let mut options = database.options().clone();
        options
            .config
            .application_name(format!("{} cancel", fleet.config.application_name));
        let client = connect_with(options).await?;
        let _ = client
            .query_one("SELECT pg_cancel_backend($1)", &[&pid])
            .await;
        Ok(())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not cancel a timed-out target's statement");
    }
}

/// Whether a schema target's history table exists yet.
pub(crate) async fn history_exists(
    client: &Client,
    table: &TableName,
) -> Result<bool, TargetError> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
        .await
        .map_err(|error| {
            TargetError::Runtime(RuntimeError::Database {
                action: "looking for the history table",
                error,
            })
        })?;
    Ok(row.get(0))
}

/// Creates a schema target's history table, under its migration lock as the runtime does
/// (concurrent `CREATE TABLE IF NOT EXISTS` can fail on the catalog's unique index).
///
/// Needed because the runtime refuses to start a new history table while another of ours
/// exists in the database (a typo in `--history-table` would otherwise apply everything
/// again): for schema targets, one history per schema is the point, so the fleet creates
/// each one deliberately.
pub(crate) async fn create_history(
    client: &Client,
    migrator: &Migrator<'_>,
    lock_wait: Duration,
) -> Result<(), TargetError> {
    let database = |action: &'static str| {
        move |error| TargetError::Runtime(RuntimeError::Database { action, error })
    };
    let key = migrator.lock_key();
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(database("taking the migration lock"))?
            .get(0);
        if taken {
            break;
        }
        if started.elapsed() >= lock_wait {
            return Err(TargetError::Runtime(RuntimeError::LockTimeout {
                key,
                waited: started.elapsed(),
                holder: None,
            }));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    let created = History::new(migrator.history_table().clone())
        .ensure(client)
        .await;
    client
        .query_one("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .map_err(database("releasing the migration lock"))?;
    created.map_err(TargetError::Runtime)
}
