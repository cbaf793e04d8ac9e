//! The history table: one row per applied migration.
//!
//! ```sql
//! CREATE TABLE "public"."schema_migrations" (
//!     version     bigint PRIMARY KEY,
//!     name        text NOT NULL,
//!     phase       text NOT NULL,
//!     checksum    char(64) NOT NULL,
//!     executed_at timestamptz NOT NULL DEFAULT now(),
//!     duration_ms bigint NOT NULL,
//!     executed_by text NOT NULL DEFAULT current_user,
//!     repaired_at timestamptz,
//!     baselined   boolean NOT NULL DEFAULT false
//! )
//! ```
//!
//! `baselined` (added later: `History::ensure` adds it to an older table, once) marks rows
//! `migrate baseline` recorded for migrations that ran by other means.
//!
//! Names are configurable; every part is validated as a plain identifier and always written
//! double-quoted, never interpolated raw.

use std::fmt;
use std::time::SystemTime;

use tokio_postgres::Client;

use crate::migration::Migration;
use crate::runtime::error::RuntimeError;

/// A validated, optionally schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The schema, when qualified; unqualified names follow the session's `search_path`.
    /// Private: [`TableName::parse`] validated both parts, and `quoted()` relies on it.
    pub(crate) schema: Option<String>,
    /// The table.
    pub(crate) name: String,
}

impl TableName {
    /// The schema, when the name is qualified.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table's own name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `schema.table` or `table`; each part `[A-Za-z_][A-Za-z0-9_]{0,62}` (63 bytes is
    /// PostgreSQL's NAMEDATALEN - 1; longer names would be silently truncated).
    pub fn parse(text: &str) -> Result<TableName, RuntimeError> {
        let invalid = || RuntimeError::InvalidIdentifier {
            what: "history table name",
            value: text.to_owned(),
        };
        let parts: Vec<&str> = text.split('.').collect();
        if !parts.iter().all(|part| is_identifier(part)) {
            return Err(invalid());
        }
        match parts.as_slice() {
            [name] => Ok(TableName {
                schema: None,
                name: (*name).to_owned(),
            }),
            [schema, name] => Ok(TableName {
                schema: Some((*schema).to_owned()),
                name: (*name).to_owned(),
            }),
            _ => Err(invalid()),
        }
    }

    /// The state table beside this history table: same schema, name + `suffix`
    /// (`_backfill`, `_partial`). `what` names it in the error when the longer name is no
    /// longer a valid identifier (over 63 bytes).
    pub(crate) fn sibling(
        &self,
        suffix: &str,
        what: &'static str,
    ) -> Result<TableName, RuntimeError> {
        let name = format!("{}{suffix}", self.name);
        if !is_identifier(&name) {
            return Err(RuntimeError::InvalidIdentifier { what, value: name });
        }
        Ok(TableName {
            schema: self.schema.clone(),
            name,
        })
    }

    /// `"schema"."name"`. Identifiers are validated, so no `"` needs escaping.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes (PostgreSQL's NAMEDATALEN - 1): a name that
/// needs no quoting and is never truncated.
pub(crate) fn is_identifier(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// The columns a table must have to be read as our history table (`baselined` may be
/// missing from an older one).
const HISTORY_COLUMNS: [&str; 7] = [
    "version",
    "name",
    "phase",
    "checksum",
    "executed_at",
    "duration_ms",
    "executed_by",
];

/// The tool whose history table has exactly these columns, for the message.
fn other_tool_of(columns: &[String]) -> Option<&'static str> {
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    match names.as_slice() {
        ["version", "dirty"] => Some("golang-migrate"),
        ["version"] => Some("dbmate"),
        _ => None,
    }
}

/// The guard of every command that reads or writes the runtime's tables (history, backfill
/// progress, flags, reconcile queue, compare progress), run before it touches any: refuses a
/// configured history table that is probably a typo (missing while another history table of
/// ours exists) or another tool's (golang-migrate's and dbmate's `schema_migrations`).
/// Read only; creates nothing.
pub async fn check_history_table(client: &Client, table: &TableName) -> Result<(), RuntimeError> {
    History::new(table.clone()).check(client).await.map(|_| ())
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRow {
    pub version: u64,
    pub name: String,
    pub phase: String,
    pub checksum: String,
    pub executed_at: SystemTime,
    pub duration_ms: i64,
    pub executed_by: String,
    /// Recorded by `migrate baseline`, not run by migrate.
    pub baselined: bool,
}

/// SQL texts for one history table, built once.
#[derive(Debug, Clone)]
pub(crate) struct History {
    table: TableName,
    quoted: String,
    insert: String,
    insert_in_transaction: String,
    delete: String,
}

impl History {
    pub(crate) fn new(table: TableName) -> History {
        let quoted = table.quoted();
        History {
            insert: format!(
                "INSERT INTO {quoted} (version, name, phase, checksum, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5)"
            ),
            // Inside the migration's transaction `now()` is its start
            // (https://www.postgresql.org/docs/15/functions-datetime.html#FUNCTIONS-DATETIME-CURRENT),
            // so the server measures the statements' run time; this lets the whole
            // transaction be sent as one pipeline.
            insert_in_transaction: format!(
                "INSERT INTO {quoted} (version, name, phase, checksum, duration_ms) \
                 VALUES ($1, $2, $3, $4, \
                         (extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint)"
            ),
            delete: format!("DELETE FROM {quoted} WHERE version = $1"),
            quoted,
            table,
        }
    }

    pub(crate) fn table(&self) -> &TableName {
        &self.table
    }

    pub(crate) fn quoted(&self) -> &str {
        &self.quoted
    }

    /// Creates the schema (when qualified and missing) and the table if missing. Run under
    /// the advisory lock: concurrent `CREATE TABLE IF NOT EXISTS` can fail on the catalog's
    /// unique index.
    pub(crate) async fn ensure(&self, client: &Client) -> Result<(), RuntimeError> {
        if self.exists(client).await? {
            return self.upgrade(client).await;
        }
        let mut sql = String::new();
        if let Some(schema) = &self.table.schema {
            // CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the database before
            // it checks existence, so a deploy role without it would fail even on `public`.
            let present = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[schema],
                )
                .await
                .map_err(RuntimeError::database("looking up the history schema"))?
                .get::<_, bool>(0);
            if !present {
                sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n"));
            }
        }
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} (\n\
             \x20   version bigint PRIMARY KEY,\n\
             \x20   name text NOT NULL,\n\
             \x20   phase text NOT NULL,\n\
             \x20   checksum char(64) NOT NULL,\n\
             \x20   executed_at timestamptz NOT NULL DEFAULT now(),\n\
             \x20   duration_ms bigint NOT NULL,\n\
             \x20   executed_by text NOT NULL DEFAULT current_user,\n\
             \x20   repaired_at timestamptz,\n\
             \x20   baselined boolean NOT NULL DEFAULT false\n\
             )",
            self.quoted
        ));
        client
            .batch_execute(&sql)
            .await
            .map_err(RuntimeError::database("creating the history table"))
    }

    /// Adds what later versions added to an existing table (`baselined`), only when it is
    /// missing: an `ALTER TABLE` takes an exclusive lock, which a run that changes nothing
    /// should not. Under the advisory lock, like [`History::ensure`]; `ADD COLUMN` with a
    /// constant default rewrites nothing (PostgreSQL 11+).
    async fn upgrade(&self, client: &Client) -> Result<(), RuntimeError> {
        let present: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) \
                 AND attname = 'baselined' AND NOT attisdropped)",
                &[&self.quoted],
            )
            .await
            .map_err(RuntimeError::database(
                "reading the history table's columns",
            ))?
            .get(0);
        if present {
            return Ok(());
        }
        client
            .batch_execute(&format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS baselined boolean NOT NULL DEFAULT false",
                self.quoted
            ))
            .await
            .map_err(RuntimeError::database(
                "adding `baselined` to the history table",
            ))
    }

    /// Whether the table exists (without creating it: `status` and `plan` only read).
    pub(crate) async fn exists(&self, client: &Client) -> Result<bool, RuntimeError> {
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.quoted])
            .await
            .map_err(RuntimeError::database("looking up the history table"))?;
        Ok(row.get(0))
    }

    /// Other tables of this database with the history table's columns: history tables of
    /// ours under another name. Used when the configured one does not exist, where a typo
    /// in its name would otherwise start an empty history and apply every migration again.
    pub(crate) async fn others(&self, client: &Client) -> Result<Vec<String>, RuntimeError> {
        let rows = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND (SELECT count(*) FROM pg_attribute a \
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                          AND a.attname = ANY($1)) = 7 \
                   AND c.oid IS DISTINCT FROM to_regclass($2) \
                 ORDER BY 1",
                // The configured table itself is never "another" one: a concurrent runner
                // may have created it since `check` saw it missing.
                &[&HISTORY_COLUMNS.as_slice(), &self.quoted],
            )
            .await
            .map_err(RuntimeError::database("looking for other history tables"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The guard every reader and writer of the runtime's tables goes through before
    /// touching any of them ([`check_history_table`]); returns whether the table exists.
    ///
    /// Refused: a missing table while another history table of ours exists
    /// ([`RuntimeError::OtherHistoryTable`]: most likely the configured name has a typo, and
    /// going on would create `<typo>_flags` or an empty history), and a table of that name
    /// without our columns ([`RuntimeError::NotOurHistoryTable`]: golang-migrate's and
    /// dbmate's are also called `schema_migrations`).
    pub(crate) async fn check(&self, client: &Client) -> Result<bool, RuntimeError> {
        let row = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL, \
                        ARRAY(SELECT attname::text FROM pg_attribute \
                              WHERE attrelid = to_regclass($1) AND attnum > 0 \
                                AND NOT attisdropped ORDER BY attnum)",
                &[&self.quoted],
            )
            .await
            .map_err(RuntimeError::database("looking up the history table"))?;
        let exists: bool = row.get(0);
        if exists {
            let columns: Vec<String> = row.get(1);
            if HISTORY_COLUMNS
                .iter()
                .all(|wanted| columns.iter().any(|c| c == wanted))
            {
                return Ok(true);
            }
            return Err(RuntimeError::NotOurHistoryTable {
                configured: self.quoted.clone(),
                tool: other_tool_of(&columns),
                columns,
            });
        }
        let found = self.others(client).await?;
        if !found.is_empty() {
            return Err(RuntimeError::OtherHistoryTable {
                configured: self.quoted.clone(),
                found,
            });
        }
        Ok(false)
    }

    /// All rows in version order; empty when the table does not exist. Goes through
    /// [`History::check`] first.
    pub(crate) async fn read(&self, client: &Client) -> Result<Vec<HistoryRow>, RuntimeError> {
        if !self.check(client).await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    // `baselined` through the row's JSON: a table not upgraded yet (read-only
                    // commands never upgrade it) has no such column, and reads as false.
                    "SELECT version, name, phase, checksum, executed_at, duration_ms, executed_by, \
                     coalesce((to_jsonb(h) ->> 'baselined')::boolean, false) \
                     FROM {} h ORDER BY version",
                    self.quoted
                ),
                &[],
            )
            .await
            .map_err(RuntimeError::database("reading the history table"))?;
        Ok(rows
            .iter()
            .map(|row| HistoryRow {
                // Versions are written from u64 values that fit in bigint; a negative one can
                // only come from a manual edit and sorts first as 0.
                version: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                name: row.get(1),
                phase: row.get(2),
                checksum: row.get::<_, String>(3).trim().to_owned(),
                executed_at: row.get(4),
                duration_ms: row.get(5),
                executed_by: row.get(6),
                baselined: row.get(7),
            })
            .collect())
    }

    pub(crate) fn insert_sql(&self) -> &str {
        &self.insert
    }

    /// Like [`History::insert_sql`] without `$5`: the duration is measured by the server
    /// from the transaction start.
    pub(crate) fn insert_in_transaction_sql(&self) -> &str {
        &self.insert_in_transaction
    }

    pub(crate) fn delete_sql(&self) -> &str {
        &self.delete
    }
}

/// How a history row came to be when its migration did not run here.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Adopted<'a> {
    /// `migrate baseline`: the schema was built by other means; `baselined`, no duration.
    Baselined,
    /// `migrate import`: another tool ran it, and recorded when and how long.
    // `import` reads SQL: without the `lint` feature nothing imports.
    #[cfg_attr(not(feature = "lint"), allow(dead_code))]
    Imported {
        /// The tool, named in `executed_by`.
        tool: &'a str,
        /// As the tool recorded it; 0 when it kept none.
        duration_ms: i64,
        /// `now()` when the tool kept no time.
        executed_at: Option<SystemTime>,
    },
}

impl History {
    /// Writes a row per `(migration, how)` into this history when it is empty, in one
    /// transaction (all rows or none), and returns 0; when it is not empty, writes nothing
    /// and returns how many rows it holds. The caller holds the migration lock; `doing`
    /// names the work in errors.
    pub(crate) async fn write_adopted(
        &self,
        client: &Client,
        rows: &[(&Migration, Adopted<'_>)],
        doing: &'static str,
    ) -> Result<usize, RuntimeError> {
        self.ensure(client).await?;
        let found = self.read(client).await?.len();
        if found > 0 {
            return Ok(found);
        }
        let insert = format!(
            "INSERT INTO {} (version, name, phase, checksum, duration_ms, executed_at, \
                             executed_by, baselined) \
             VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), \
                     current_user || coalesce(' (imported from ' || $7::text || ')', ''), $8)",
            self.quoted
        );
        let write = async {
            client.batch_execute("BEGIN").await?;
            for (migration, how) in rows {
                let (duration_ms, executed_at, tool, baselined) = match *how {
                    Adopted::Baselined => (0, None, None, true),
                    Adopted::Imported {
                        tool,
                        duration_ms,
                        executed_at,
                    } => (duration_ms, executed_at, Some(tool), false),
                };
                client
                    .execute(
                        insert.as_str(),
                        &[
                            &sql_version(migration.version),
                            &migration.name.as_ref(),
                            &migration.phase.as_str(),
                            &migration.checksum.to_hex(),
                            &duration_ms,
                            &executed_at,
                            &tool,
                            &baselined,
                        ],
                    )
                    .await?;
            }
            client.batch_execute("COMMIT").await
        };
        if let Err(error) = write.await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(RuntimeError::database(doing)(error));
        }
        Ok(0)
    }
}

/// A version as the history table stores it (`bigint`); checked in
/// [`Migrator::new`](crate::runtime::Migrator::new).
pub(crate) fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_and_quoted() {
        let table = TableName::parse("public.schema_migrations").expect("valid");
        assert_eq!(table.quoted(), "\"public\".\"schema_migrations\"");
        assert_eq!(
            TableName::parse("Migrations").expect("valid").quoted(),
            "\"Migrations\""
        );
        for bad in [
            "",
            "a.b.c",
            "1abc",
            "a;drop table x",
            "a\".b",
            "public.",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(
                    TableName::parse(bad),
                    Err(RuntimeError::InvalidIdentifier { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
