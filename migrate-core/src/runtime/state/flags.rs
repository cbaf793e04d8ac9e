//! Dual-write flags: named booleans in the database that the application reads to decide
//! whether to write the old shape, the new one, or both.
//!
//! ```sql
//! CREATE TABLE "public"."schema_migrations_flags" (
//!     name       text PRIMARY KEY,
//!     enabled    boolean NOT NULL,
//!     updated_at timestamptz NOT NULL DEFAULT now()
//! )
//! ```
//!
//! The table sits beside the history table and is named after it (`<history>_flags`), so
//! one configured name places all the state. `set` creates the table when missing; `get`
//! and `list` only read (a missing table has no flags).

use std::time::SystemTime;

use tokio_postgres::Client;

use super::history::TableName;
use crate::runtime::error::RuntimeError;

/// Longest flag name accepted: flags are read by name in application code, so a short,
/// greppable name is the point.
pub const MAX_FLAG_NAME_LEN: usize = 128;

/// Why reading or setting a flag failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlagError {
    /// The name is not `[a-z0-9_.-]+` of at most [`MAX_FLAG_NAME_LEN`] bytes.
    #[error("invalid flag name `{name}`: use 1 to {MAX_FLAG_NAME_LEN} characters of [a-z0-9_.-]")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The flag was never set (or the flags table does not exist yet).
    #[error("flag `{name}` is not set; `flag set {name} on|off` creates it")]
    NotFound {
        /// The name as given.
        name: String,
    },
    /// Reading or writing the flags table failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// One flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name the application reads it by.
    pub name: String,
    /// On or off.
    pub enabled: bool,
    /// When it was last set, on the server's clock.
    pub updated_at: SystemTime,
}

/// `[a-z0-9_.-]+`, at most [`MAX_FLAG_NAME_LEN`] bytes.
pub fn validate_flag_name(name: &str) -> Result<(), FlagError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_FLAG_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(FlagError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// The flags table of one history table.
#[derive(Debug, Clone)]
pub struct FlagStore {
    table: TableName,
    quoted: String,
}

impl FlagStore {
    /// `<history table>_flags` in the history table's schema; the derived name is validated
    /// again, as it may pass PostgreSQL's 63-byte identifier limit.
    pub fn for_history_table(history: &TableName) -> Result<FlagStore, RuntimeError> {
        let name = format!("{}_flags", history.name);
        let text = match &history.schema {
            Some(schema) => format!("{schema}.{name}"),
            None => name,
        };
        let table = TableName::parse(&text).map_err(|_| RuntimeError::InvalidIdentifier {
            what: "flags table name (history table name + `_flags`)",
            value: text.clone(),
        })?;
        Ok(FlagStore {
            quoted: table.quoted(),
            table,
        })
    }

    /// The flags table.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    async fn exists(&self, client: &Client) -> Result<bool, RuntimeError> {
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.quoted])
            .await
            .map_err(RuntimeError::database("looking up the flags table"))?;
        Ok(row.get(0))
    }

    /// Creates the table if missing.
    pub(crate) async fn ensure(&self, client: &Client) -> Result<(), RuntimeError> {
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (\n\
             \x20   name text PRIMARY KEY,\n\
             \x20   enabled boolean NOT NULL,\n\
             \x20   updated_at timestamptz NOT NULL DEFAULT now()\n\
             )",
            self.quoted
        );
        super::ensure_table(
            client,
            &self.quoted,
            &create,
            "creating the flags table",
            None,
        )
        .await
    }

    /// The flag called `name`; [`FlagError::NotFound`] when it was never set. Read only.
    pub async fn get(&self, client: &Client, name: &str) -> Result<Flag, FlagError> {
        validate_flag_name(name)?;
        if !self.exists(client).await? {
            return Err(FlagError::NotFound {
                name: name.to_owned(),
            });
        }
        let row = client
            .query_opt(
                &format!(
                    "SELECT name, enabled, updated_at FROM {} WHERE name = $1",
                    self.quoted
                ),
                &[&name],
            )
            .await
            .map_err(RuntimeError::database("reading a flag"))?;
        row.map(|row| Flag {
            name: row.get(0),
            enabled: row.get(1),
            updated_at: row.get(2),
        })
        .ok_or_else(|| FlagError::NotFound {
            name: name.to_owned(),
        })
    }

    /// Sets (creating if needed) a flag and returns it as stored.
    pub async fn set(&self, client: &Client, name: &str, enabled: bool) -> Result<Flag, FlagError> {
        validate_flag_name(name)?;
        self.ensure(client).await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO {} AS f (name, enabled) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, updated_at = now() \
                     RETURNING f.name, f.enabled, f.updated_at",
                    self.quoted
                ),
                &[&name, &enabled],
            )
            .await
            .map_err(RuntimeError::database("writing a flag"))?;
        Ok(Flag {
            name: row.get(0),
            enabled: row.get(1),
            updated_at: row.get(2),
        })
    }

    /// Every flag, by name; empty when the table does not exist.
    pub async fn list(&self, client: &Client) -> Result<Vec<Flag>, RuntimeError> {
        if !self.exists(client).await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    "SELECT name, enabled, updated_at FROM {} ORDER BY name",
                    self.quoted
                ),
                &[],
            )
            .await
            .map_err(RuntimeError::database("reading the flags"))?;
        Ok(rows
            .iter()
            .map(|row| Flag {
                name: row.get(0),
                enabled: row.get(1),
                updated_at: row.get(2),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_validated() {
        for good in ["orders.dual_write", "a", "x-1_2.b"] {
            assert!(validate_flag_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Upper", "a b", "a;b", "é", "a'b", &"x".repeat(129)] {
            assert!(
                matches!(validate_flag_name(bad), Err(FlagError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn table_name_derives_from_the_history_table() {
        let history = TableName::parse("ops.schema_migrations").unwrap();
        let flags = FlagStore::for_history_table(&history).unwrap();
        assert_eq!(
            flags.table().quoted(),
            "\"ops\".\"schema_migrations_flags\""
        );
        let long = TableName::parse(&"h".repeat(60)).unwrap();
        assert!(FlagStore::for_history_table(&long).is_err());
    }
}
