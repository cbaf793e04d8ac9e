//! Each tool's history table, as its documentation and code define it, and the checksum it
//! records:
//!
//! | tool | table | a row is | checksum | applied at |
//! | --- | --- | --- | --- | --- |
//! | sqlx | `_sqlx_migrations` | an applied version (`success`) | SHA-384 of the up file's text | `installed_on` |
//! | refinery | `refinery_schema_history` | an applied version | SipHash-1-3 (zero keys) of name, version (`i32`), text, as `Hash` writes them, in decimal | `applied_on` (RFC 3339 text) |
//! | Flyway | `flyway_schema_history` | an event (`SQL`, `UNDO_SQL`, `BASELINE`, ...) | CRC-32 of the file's lines without their line breaks (a first-line BOM dropped), as a signed `int` | `installed_on` |
//! | diesel | `__diesel_schema_migrations` | an applied version (text, no dashes) | none | `run_on` |
//! | dbmate | `schema_migrations` (`version` text) | an applied version | none | none |
//! | golang-migrate | `schema_migrations` (`version bigint`, `dirty`) | one row: the current version; every file up to it is applied | none | none |

use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use sha2::{Digest, Sha384};
use tokio_postgres::Client;

use super::{ImportError, Recorded};
use crate::migration::Migration;
use crate::runtime::error::RuntimeError;
use crate::source::Layout;

/// The history table of `tool` (unqualified: found through `search_path`, as the tools do).
pub fn table_of(tool: Layout) -> Option<&'static str> {
    match tool {
        Layout::Migrate => None,
        Layout::Sqlx => Some("_sqlx_migrations"),
        Layout::Refinery => Some("refinery_schema_history"),
        Layout::Flyway => Some("flyway_schema_history"),
        Layout::Diesel => Some("__diesel_schema_migrations"),
        Layout::Dbmate | Layout::GolangMigrate => Some("schema_migrations"),
    }
}

/// A checksum another tool recorded for a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedChecksum {
    /// sqlx: SHA-384 of the up file's text.
    Sha384(Vec<u8>),
    /// refinery: the decimal text of its SipHash-1-3.
    Refinery(String),
    /// Flyway: CRC-32 of the lines.
    Crc32(i32),
}

impl RecordedChecksum {
    /// Whether `bytes`, the migration's up file, still have this checksum.
    pub fn matches(&self, migration: &Migration, bytes: &[u8]) -> bool {
        match self {
            RecordedChecksum::Sha384(recorded) => Sha384::digest(bytes).as_slice() == recorded,
            RecordedChecksum::Refinery(recorded) => {
                let Ok(version) = i32::try_from(migration.version) else {
                    return false;
                };
                let Ok(text) = std::str::from_utf8(bytes) else {
                    return false;
                };
                refinery_checksum(&migration.name, version, text).to_string() == *recorded
            }
            RecordedChecksum::Crc32(recorded) => flyway_checksum(bytes) == *recorded,
        }
    }
}

/// refinery's checksum: its name, version and text through `Hash` into a zero-keyed
/// SipHash-1-3.
pub(crate) fn refinery_checksum(name: &str, version: i32, text: &str) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new();
    name.to_owned().hash(&mut hasher);
    version.hash(&mut hasher);
    text.to_owned().hash(&mut hasher);
    hasher.finish()
}

/// Flyway's checksum: CRC-32 over each line's UTF-8 bytes without its line break (`\n`,
/// `\r\n` or `\r`, as Java's `readLine` splits), a byte order mark at the start dropped; the
/// `int` Flyway stores.
pub(crate) fn flyway_checksum(bytes: &[u8]) -> i32 {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut crc = crc32fast::Hasher::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        crc.update(&rest[..end]);
        rest = &rest[end..];
        if rest.starts_with(b"\r\n") {
            rest = &rest[2..];
        } else if !rest.is_empty() {
            rest = &rest[1..];
        }
    }
    crc.finalize() as i32
}

fn database(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ImportError {
    move |error| ImportError::Runtime(RuntimeError::database(action)(error))
}

/// The columns of `table` found through `search_path`; empty when it does not exist.
async fn columns(client: &Client, table: &str) -> Result<Vec<String>, ImportError> {
    let rows = client
        .query(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 \
             AND NOT attisdropped ORDER BY attnum",
            &[&format!("\"{table}\"")],
        )
        .await
        .map_err(database("reading the other tool's table columns"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn version_of(tool: Layout, text: &str) -> Result<u64, ImportError> {
    text.parse::<u64>()
        .ok()
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(|| ImportError::Unsupported {
            tool,
            problem: format!("version `{text}` is not a whole number migrate can record"),
        })
}

/// The versions `tool` recorded as applied, with what it recorded of each. `versions` are the
/// set's, for golang-migrate, which records only the last one.
pub(super) async fn read(
    client: &Client,
    tool: Layout,
    versions: &[u64],
) -> Result<Vec<Recorded>, ImportError> {
    let table = table_of(tool).ok_or(ImportError::NotAnotherTool { tool })?;
    let found = columns(client, table).await?;
    if found.is_empty() {
        return Err(ImportError::NoTable { tool, table });
    }
    let expected: &'static str = match tool {
        Layout::Sqlx => "version, checksum, success, installed_on, execution_time",
        Layout::Refinery => "version, name, checksum",
        Layout::Flyway => {
            "installed_rank, version, type, checksum, success, installed_on, execution_time"
        }
        Layout::Diesel => "version, run_on",
        Layout::GolangMigrate => "version, dirty",
        Layout::Dbmate | Layout::Migrate => "version",
    };
    let has_all = expected.split(", ").all(|c| found.iter().any(|f| f == c));
    // dbmate's table is `version` alone; golang-migrate's has `dirty` too.
    let dbmate_mistaken = tool == Layout::Dbmate && found.iter().any(|f| f == "dirty");
    if !has_all || dbmate_mistaken {
        return Err(ImportError::WrongShape {
            tool,
            table,
            expected,
        });
    }
    let query = |sql: &'static str| async move {
        client
            .query(sql, &[])
            .await
            .map_err(database("reading the other tool's history"))
    };
    let unsupported = |problem: String| ImportError::Unsupported { tool, problem };
    let mut recorded = Vec::new();
    match tool {
        Layout::Sqlx => {
            for row in query("SELECT version, checksum, success, installed_on, execution_time FROM \"_sqlx_migrations\" ORDER BY version").await? {
                let version: i64 = row.get(0);
                if !row.get::<_, bool>(2) {
                    return Err(unsupported(format!("version {version} is recorded as failed (success = false): fix it with sqlx first")));
                }
                let nanos: i64 = row.get(4);
                recorded.push(Recorded {
                    version: version_of(tool, &version.to_string())?,
                    checksum: Some(RecordedChecksum::Sha384(row.get(1))),
                    executed_at: Some(row.get::<_, SystemTime>(3)),
                    duration_ms: Some(nanos / 1_000_000),
                });
            }
        }
        Layout::Refinery => {
            // `applied_on` is text (RFC 3339, as refinery writes it); one that does not look
            // like a timestamp is read as not recorded rather than failing the cast.
            for row in query("SELECT version, checksum, CASE WHEN applied_on ~ '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|z|[+-]\\d{2}(:?\\d{2})?)?$' THEN applied_on::timestamptz END FROM \"refinery_schema_history\" ORDER BY version").await? {
                let version: i32 = row.get(0);
                recorded.push(Recorded {
                    version: version_of(tool, &version.to_string())?,
                    checksum: Some(RecordedChecksum::Refinery(row.get(1))),
                    executed_at: row.get::<_, Option<SystemTime>>(2),
                    duration_ms: None,
                });
            }
        }
        Layout::Flyway => {
            // `installed_on` is a timestamp without time zone written by now(): read in this
            // session's TimeZone, as it was written (not as UTC).
            for row in query("SELECT version, type, checksum, success, installed_on::timestamptz, execution_time FROM \"flyway_schema_history\" ORDER BY installed_rank").await? {
                let version: Option<String> = row.get(0);
                let kind: String = row.get(1);
                let success: bool = row.get(3);
                let label = version.clone().unwrap_or_else(|| "(none)".to_owned());
                if !success {
                    return Err(unsupported(format!("version {label} is recorded as failed: run `flyway repair` first")));
                }
                if kind == "SCHEMA" {
                    continue; // Flyway's note that it created the schema
                }
                let Some(version) = version else {
                    return Err(unsupported(format!("a `{kind}` row without a version (a repeatable migration), which migrate has no equivalent for")));
                };
                let number = version_of(tool, &version)?;
                match kind.as_str() {
                    "SQL" => recorded.push(Recorded {
                        version: number,
                        checksum: row.get::<_, Option<i32>>(2).map(RecordedChecksum::Crc32),
                        executed_at: Some(row.get::<_, SystemTime>(4)),
                        duration_ms: Some(i64::from(row.get::<_, i32>(5))),
                    }),
                    "UNDO_SQL" => recorded.retain(|r| r.version != number),
                    other => return Err(unsupported(format!("version {version} is a `{other}` row; migrate imports applied SQL migrations (for a Flyway baseline use `migrate baseline`)"))),
                }
            }
        }
        Layout::Diesel => {
            // `run_on` is a timestamp without time zone, written by CURRENT_TIMESTAMP in the
            // session's TimeZone: read in this session's, the server's default like diesel's.
            for row in query("SELECT version, run_on::timestamptz FROM \"__diesel_schema_migrations\" ORDER BY version").await? {
                let version: String = row.get(0);
                recorded.push(Recorded {
                    version: version_of(tool, &version)?,
                    checksum: None,
                    executed_at: Some(row.get::<_, SystemTime>(1)),
                    duration_ms: None,
                });
            }
        }
        Layout::Dbmate => {
            for row in query("SELECT version::text FROM \"schema_migrations\" ORDER BY version").await? {
                let version: String = row.get(0);
                recorded.push(Recorded {
                    version: version_of(tool, &version)?,
                    checksum: None,
                    executed_at: None,
                    duration_ms: None,
                });
            }
        }
        Layout::GolangMigrate => {
            let rows = query("SELECT version, dirty FROM \"schema_migrations\"").await?;
            if rows.len() > 1 {
                return Err(unsupported(format!("golang-migrate keeps one row, this table has {}", rows.len())));
            }
            if let Some(row) = rows.first() {
                let current: i64 = row.get(0);
                if row.get::<_, bool>(1) {
                    return Err(unsupported(format!("version {current} is dirty (it failed half-way): fix it with `migrate force` of golang-migrate first")));
                }
                let current = version_of(tool, &current.to_string())?;
                if !versions.contains(&current) {
                    return Err(ImportError::Disagree { tool, missing: vec![current], differs: Vec::new() });
                }
                for &version in versions.iter().filter(|v| **v <= current) {
                    recorded.push(Recorded { version, checksum: None, executed_at: None, duration_ms: None });
                }
            }
        }
        Layout::Migrate => return Err(ImportError::NotAnotherTool { tool }),
    }
    recorded.sort_by_key(|r| r.version);
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flyway_lines_ignore_their_breaks_and_a_byte_order_mark() {
        let lf = flyway_checksum(b"CREATE TABLE a (id int);\nSELECT 1;\n");
        assert_eq!(
            lf,
            flyway_checksum(b"CREATE TABLE a (id int);\r\nSELECT 1;\r\n")
        );
        assert_eq!(
            lf,
            flyway_checksum("\u{feff}CREATE TABLE a (id int);\nSELECT 1;".as_bytes())
        );
        assert_ne!(
            lf,
            flyway_checksum(b"CREATE TABLE a (id int);\nSELECT 2;\n")
        );
        // CRC-32 of the concatenated lines, as a signed int.
        assert_eq!(flyway_checksum(b"a\nb\n"), crc32fast::hash(b"ab") as i32);
    }
}
