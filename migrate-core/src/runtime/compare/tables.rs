//! What the catalog says about a compare's two tables, read before any row is: that they and
//! their columns exist, the key's type and collation, the target columns' types (which
//! [`RowEquality`] casts to), and whether the key names one row per key on each side.

use tokio_postgres::Client;

use crate::migration::{CompareSpec, TableRef};
use crate::runtime::Migrator;
use crate::runtime::compare::row_equality::{RowEquality, TARGET_TYPES};
use crate::runtime::deadline;
use crate::runtime::error::{CompareLocation, CompareSide, KeyProblem, RuntimeError};

/// Duplicated keys named in a [`KeyProblem`].
const KEYS_NAMED: i64 = 10;

/// A compare's tables as the catalog describes them.
#[derive(Debug, Clone)]
pub(crate) struct CompareTables {
    /// The source key's type, which the text cursor is cast to.
    pub key_type: String,
    /// The source key's collation, quoted (`"pg_catalog"."C"`); `None` for a type without.
    pub key_collation: Option<String>,
    /// Equality of a source row and a target row.
    pub equality: RowEquality,
}

impl Migrator<'_> {
    /// Reads [`CompareTables`], refusing a table or a column that does not exist.
    pub(crate) async fn compare_tables(
        &self,
        client: &Client,
        at: &CompareLocation,
        spec: &CompareSpec,
    ) -> Result<CompareTables, RuntimeError> {
        let own = Some(self.config.limits().own);
        let problem = |problem: String| RuntimeError::Compare {
            at: at.clone(),
            problem,
        };
        for (side, table) in [
            (CompareSide::Source, &spec.source),
            (CompareSide::Target, &spec.target),
        ] {
            let exists: bool = deadline::within(
                own,
                "reading a compare's tables",
                client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()]),
            )
            .await?
            .map_err(RuntimeError::database("reading a compare's tables"))?
            .get(0);
            if !exists {
                return Err(problem(format!("{side} table {table} does not exist")));
            }
        }
        let key = deadline::within(
            own,
            "reading the compare key's type",
            client.query_opt(
                "SELECT format_type(a.atttypid, a.atttypmod), \
                        CASE WHEN a.attcollation <> 0 \
                             THEN quote_ident(n.nspname) || '.' || quote_ident(c.collname) END \
                 FROM pg_attribute a \
                 LEFT JOIN pg_collation c ON c.oid = a.attcollation \
                 LEFT JOIN pg_namespace n ON n.oid = c.collnamespace \
                 WHERE a.attrelid = to_regclass($1) AND a.attname = $2 \
                   AND a.attnum > 0 AND NOT a.attisdropped",
                &[&spec.source.quoted(), &spec.key],
            ),
        )
        .await?
        .map_err(RuntimeError::database("reading the compare key's type"))?
        .ok_or_else(|| no_column(at, CompareSide::Source, &spec.source, &spec.key))?;
        let mut wanted = vec![spec.key.clone()];
        wanted.extend(spec.columns.iter().cloned());
        let rows = deadline::within(
            own,
            "reading the compare target's column types",
            client.query(TARGET_TYPES, &[&spec.target.quoted(), &wanted]),
        )
        .await?
        .map_err(RuntimeError::database(
            "reading the compare target's column types",
        ))?;
        let mut target_types = Vec::new();
        for row in &rows {
            let (name, column_type): (String, Option<String>) = (row.get(0), row.get(1));
            let Some(column_type) = column_type else {
                return Err(no_column(at, CompareSide::Target, &spec.target, &name));
            };
            target_types.push(column_type);
        }
        // The first is the key: only its existence mattered.
        target_types.remove(0);
        Ok(CompareTables {
            key_type: key.get(0),
            key_collation: key.get(1),
            equality: RowEquality::new(target_types),
        })
    }

    /// Fails with [`RuntimeError::CompareKey`] unless the key is unique and NOT NULL on each
    /// side: from the catalog when a valid, non-partial unique index on the key alone and
    /// `NOT NULL` prove it, else by counting NULL keys and duplicated keys (a scan).
    pub(crate) async fn check_compare_key(
        &self,
        client: &Client,
        at: &CompareLocation,
        spec: &CompareSpec,
    ) -> Result<(), RuntimeError> {
        let mut sides = vec![(CompareSide::Source, &spec.source)];
        if !spec.same_table() {
            sides.push((CompareSide::Target, &spec.target));
        }
        let limit = self.config.limits().statement;
        let mut problems = Vec::new();
        for (side, table) in sides {
            let quoted = table.quoted();
            let row = deadline::within(
                Some(self.config.limits().own),
                "reading the compare key's constraints",
                client.query_opt(
                    "SELECT a.attnotnull, EXISTS ( \
                         SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid \
                           AND i.indisunique AND i.indisvalid AND i.indpred IS NULL \
                           AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) \
                     FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 \
                       AND a.attnum > 0 AND NOT a.attisdropped",
                    &[&quoted, &spec.key],
                ),
            )
            .await?
            .map_err(RuntimeError::database("reading the compare key's constraints"))?
            .ok_or_else(|| no_column(at, side, table, &spec.key))?;
            let (not_null, unique): (bool, bool) = (row.get(0), row.get(1));
            let key = format!("{quoted}.{}", spec.quoted_key());
            let null_rows = if not_null {
                0
            } else {
                deadline::within(
                    limit,
                    "counting NULL compare keys",
                    client.query_one(
                        &format!("SELECT count(*) FROM {quoted} WHERE {key} IS NULL"),
                        &[],
                    ),
                )
                .await?
                .map_err(RuntimeError::database("counting NULL compare keys"))?
                .get(0)
            };
            let duplicates = if unique {
                Vec::new()
            } else {
                deadline::within(
                    limit,
                    "counting duplicated compare keys",
                    client.query(
                        &format!(
                            "SELECT {key}::text AS migrate_key, count(*), count(*) OVER () \
                             FROM {quoted} WHERE {key} IS NOT NULL GROUP BY {key} \
                             HAVING count(*) > 1 ORDER BY {key} LIMIT $1"
                        ),
                        &[&KEYS_NAMED],
                    ),
                )
                .await?
                .map_err(RuntimeError::database("counting duplicated compare keys"))?
            };
            let duplicated_keys: i64 = duplicates.first().map_or(0, |row| row.get(2));
            if null_rows > 0 || duplicated_keys > 0 {
                problems.push(KeyProblem {
                    side,
                    table: table.to_string(),
                    null_rows,
                    duplicated_keys,
                    duplicates: duplicates
                        .iter()
                        .map(|row| (row.get(0), row.get(1)))
                        .collect(),
                });
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::CompareKey {
            at: at.clone(),
            key: crate::migration::display_identifier(&spec.key),
            problems,
        })
    }
}

fn no_column(
    at: &CompareLocation,
    side: CompareSide,
    table: &TableRef,
    column: &str,
) -> RuntimeError {
    RuntimeError::Compare {
        at: at.clone(),
        problem: format!(
            "{side} table {table} has no column {}",
            crate::migration::display_identifier(column)
        ),
    }
}
