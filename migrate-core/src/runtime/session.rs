//! The session state a migration can leave behind, captured and put back: each migration of a
//! run starts from the same state, and the caller's client goes back as it came.
//!
//! A migration is SQL run on the caller's session, so `SET search_path TO lab, public` in one
//! would make the next one create its tables in `lab`, and a pooled connection would come back
//! with it. What is captured and restored:
//!
//! - every setting set in the session (`pg_settings.source = 'session'`), plus `role` and
//!   `session_authorization`, which `pg_settings` does not show; a setting the migration set
//!   that was not set before goes back to its reset value (the server default, or what the
//!   client sent at startup);
//! - prepared statements made with SQL `PREPARE` (`pg_prepared_statements.from_sql`), `LISTEN`
//!   channels and temporary tables the migration added.
//!
//! Not `DISCARD ALL`, even on a connection of our own: it also releases session advisory
//! locks (the migration lock among them) and deallocates every prepared statement, including
//! the protocol-level ones tokio-postgres holds for the caller (a pool's statement cache
//! would then fail with "prepared statement does not exist"). Protocol-level statements
//! (`from_sql = false`) and the caller's own SQL ones are never touched.
//! <https://www.postgresql.org/docs/15/sql-discard.html>

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use super::error::RuntimeError;

/// `backend_flush_after` for the run's sessions (the migration's and the backfill workers').
/// A backfill or a table rewrite dirties pages the server evicts through the session that
/// needs the buffer; by default (0) those writes sit in the kernel's page cache until its
/// periodic writeback sends them out in one burst, and the application's statements queue
/// behind it (on a table larger than `shared_buffers` a p99 spike every 30 s). With
/// this the kernel is asked to write them as they go, the checkpointer's own default.
/// <https://www.postgresql.org/docs/15/runtime-config-resource.html#GUC-BACKEND-FLUSH-AFTER>
pub(crate) const RUN_FLUSH_AFTER: &str = "256kB";

/// Reads everything [`SessionState`] holds in one round trip. `role` and
/// `session_authorization` come first: restoring them first lets the other settings be set
/// with the original privileges.
const CAPTURE: &str = "\
SELECT 'setting', 'session_authorization', current_setting('session_authorization') \
UNION ALL SELECT 'setting', 'role', current_setting('role') \
UNION ALL SELECT 'setting', name, current_setting(name) FROM pg_settings \
          WHERE source = 'session' AND name NOT IN ('role', 'session_authorization') \
UNION ALL SELECT 'prepared', name, NULL FROM pg_prepared_statements WHERE from_sql \
UNION ALL SELECT 'channel', channel, NULL FROM pg_listening_channels() AS channel \
UNION ALL SELECT 'temp', format('%I.%I', n.nspname, c.relname), NULL \
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relnamespace = pg_my_temp_schema() AND c.relkind IN ('r', 'p') \
            AND NOT c.relispartition";

/// The session state a migration can change; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionState {
    /// Settings set in the session, by name, with `role` and `session_authorization`.
    settings: BTreeMap<String, String>,
    /// Names of prepared statements made with SQL `PREPARE`.
    prepared: BTreeSet<String>,
    /// `LISTEN` channels.
    channels: BTreeSet<String>,
    /// Temporary tables, `schema.table` quoted as needed.
    temp_tables: BTreeSet<String>,
}

impl SessionState {
    /// The session's state now. Outside a transaction (or in one that is not aborted).
    pub(crate) async fn capture(client: &Client) -> Result<SessionState, RuntimeError> {
        let rows = client
            .query(CAPTURE, &[])
            .await
            .map_err(RuntimeError::database("reading the session state"))?;
        let mut state = SessionState {
            settings: BTreeMap::new(),
            prepared: BTreeSet::new(),
            channels: BTreeSet::new(),
            temp_tables: BTreeSet::new(),
        };
        for row in &rows {
            let kind: &str = row.get(0);
            let name: String = row.get(1);
            match kind {
                "setting" => {
                    state.settings.insert(name, row.get(2));
                }
                "prepared" => {
                    state.prepared.insert(name);
                }
                "channel" => {
                    state.channels.insert(name);
                }
                _ => {
                    state.temp_tables.insert(name);
                }
            }
        }
        Ok(state)
    }

    /// Puts the session back to this state: one round trip when nothing changed. Run outside
    /// a transaction.
    pub(crate) async fn restore(&self, client: &Client) -> Result<(), RuntimeError> {
        let now = SessionState::capture(client).await?;
        if now == *self {
            return Ok(());
        }
        let error = RuntimeError::database("restoring the session state");
        // Identity first, in that order: `SET SESSION AUTHORIZATION` also resets the role.
        for name in ["session_authorization", "role"] {
            if let Some(value) = self.settings.get(name)
                && now.settings.get(name) != Some(value)
            {
                client
                    .query_one("SELECT set_config($1, $2, false)", &[&name, value])
                    .await
                    .map_err(RuntimeError::database("restoring the session's role"))?;
            }
        }
        let (names, values): (Vec<&str>, Vec<&str>) = self
            .settings
            .iter()
            .filter(|(name, value)| {
                !matches!(name.as_str(), "role" | "session_authorization")
                    && now.settings.get(*name) != Some(*value)
            })
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .unzip();
        if !names.is_empty() {
            client
                .query(
                    "SELECT set_config(name, value, false) \
                     FROM unnest($1::text[], $2::text[]) AS s(name, value)",
                    &[&names, &values],
                )
                .await
                .map_err(error)?;
        }
        // Set by the migration only: back to the value a RESET gives (`reset_val`, in the
        // setting's base unit, which is what `set_config` reads a bare number as).
        let added: Vec<&str> = now
            .settings
            .keys()
            .filter(|name| !self.settings.contains_key(*name))
            .map(String::as_str)
            .collect();
        if !added.is_empty() {
            client
                .query(
                    "SELECT set_config(name, reset_val, false) FROM pg_settings \
                     WHERE name = ANY($1)",
                    &[&added],
                )
                .await
                .map_err(RuntimeError::database("resetting the session's settings"))?;
        }
        let mut sql = String::new();
        for name in now.prepared.difference(&self.prepared) {
            sql.push_str(&format!("DEALLOCATE {};\n", quote_identifier(name)));
        }
        for channel in now.channels.difference(&self.channels) {
            sql.push_str(&format!("UNLISTEN {};\n", quote_identifier(channel)));
        }
        for table in now.temp_tables.difference(&self.temp_tables) {
            // Already quoted by the server's format('%I.%I').
            sql.push_str(&format!("DROP TABLE IF EXISTS {table} CASCADE;\n"));
        }
        if !sql.is_empty() {
            client
                .batch_execute(&sql)
                .await
                .map_err(RuntimeError::database(
                    "dropping what a migration left in the session",
                ))?;
        }
        Ok(())
    }
}

/// `"name"` with `"` doubled: any name the server returned, written back as an identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_quotes_doubled() {
        assert_eq!(quote_identifier("plain"), "\"plain\"");
        assert_eq!(quote_identifier("a\"; DROP"), "\"a\"\"; DROP\"");
    }
}
