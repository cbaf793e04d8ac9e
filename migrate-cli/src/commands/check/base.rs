//! What `check` starts from: an empty database, or production's own schema, read from a live
//! database (`--schema-from`, read-only) or from a dump file (`--schema-file`), with that
//! database's migration state (history, backfill progress, flags, partial runs) and
//! optionally a sample of its rows (`--sample-rows`).
//!
//! Read-only policy: every session `check` opens on the source runs
//! with `default_transaction_read_only = on` (set at connection start, for pg_dump through
//! `PGOPTIONS`), and reads in one `REPEATABLE READ, READ ONLY` transaction whose snapshot
//! pg_dump shares (`pg_export_snapshot()`, `pg_dump --snapshot`), so the schema, the history
//! and the sampled rows are one consistent moment. The server refuses any write in such a
//! session (SQLSTATE 25006), so a role with write privileges is accepted and no flag is asked
//! for. The reads take ACCESS SHARE locks (pg_dump locks every table it dumps, a sampled
//! `SELECT` its table), given up after `--lock-timeout` rather than queueing behind DDL.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures_util::StreamExt;
use migrate_core::runtime::{ConnectOptions, SslMode, connect_with};
use migrate_scratch::{DumpSource, PgBinaries, PgDump, ScratchCluster, ScratchDatabase};
use tokio_postgres::Client;

use crate::{Context, block_on};

/// Where the scratch databases of a check start.
pub(super) enum Base {
    /// Empty: the migration files make the whole schema.
    Empty,
    /// A schema and rows to load first.
    Loaded {
        /// Where it came from, for messages (never a password).
        origin: String,
        /// The schema (pg_dump SQL).
        schema: String,
        /// `COPY ... FROM stdin` blocks: the state tables' rows, then the sampled rows.
        rows: String,
        /// Rows copied per table: (table, rows).
        sampled: Vec<(String, u64)>,
        /// The major of the server it was read from (`--schema-from`); `None` for a file.
        production_major: Option<u32>,
    },
}

impl Base {
    /// A new scratch database holding this base.
    pub(super) fn fresh_database(
        &self,
        cluster: &ScratchCluster,
    ) -> anyhow::Result<ScratchDatabase> {
        let database = cluster.create_database()?;
        if let Base::Loaded {
            origin,
            schema,
            rows,
            ..
        } = self
        {
            cluster
                .load_sql(&database, schema)
                .with_context(|| format!("loading the schema of {origin}"))?;
            if !rows.is_empty() {
                cluster
                    .load_sql(&database, rows)
                    .with_context(|| format!("loading the rows of {origin}"))?;
            }
        }
        Ok(database)
    }

    /// The major production runs, when read from it (`--schema-from`).
    pub(super) fn production_major(&self) -> Option<u32> {
        match self {
            Base::Loaded {
                production_major, ..
            } => *production_major,
            Base::Empty => None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Base::Empty)
    }

    /// Where the base came from; "an empty database" for [`Base::Empty`].
    pub(super) fn origin(&self) -> &str {
        match self {
            Base::Empty => "an empty database",
            Base::Loaded { origin, .. } => origin,
        }
    }

    /// One line for the human output; `None` for an empty base.
    pub(super) fn describe(&self) -> Option<String> {
        let Base::Loaded {
            origin, sampled, ..
        } = self
        else {
            return None;
        };
        let rows: u64 = sampled.iter().map(|(_, n)| n).sum();
        Some(if sampled.is_empty() {
            format!("schema and history of {origin}; checking its pending migrations")
        } else {
            format!(
                "schema, history and {rows} sampled row(s) of {} table(s) of {origin}; \
                 checking its pending migrations",
                sampled.len()
            )
        })
    }

    /// `check --format json`'s `base`.
    pub(super) fn json(&self) -> serde_json::Value {
        match self {
            Base::Empty => serde_json::Value::Null,
            Base::Loaded {
                origin, sampled, ..
            } => serde_json::json!({
                "origin": origin,
                "sampled": sampled
                    .iter()
                    .map(|(table, rows)| serde_json::json!({ "table": table, "rows": rows }))
                    .collect::<Vec<_>>(),
            }),
        }
    }
}

/// `--schema-file`: a SQL dump (`pg_dump --schema-only`, plus `--data-only --table` of the
/// history table for its applied migrations), loaded as it is.
pub(super) fn from_file(path: &Path) -> anyhow::Result<Base> {
    let schema = std::fs::read_to_string(path)
        .with_context(|| format!("reading the schema file {}", path.display()))?;
    Ok(Base::Loaded {
        origin: path.display().to_string(),
        schema,
        rows: String::new(),
        sampled: Vec::new(),
        production_major: None,
    })
}

/// What `--schema-from` needs besides the URL.
pub(super) struct SourceOptions<'a> {
    pub url: &'a str,
    pub pg_dump: Option<&'a Path>,
    pub sample_rows: Option<u64>,
    pub state_tables: &'a [String],
}

/// `--schema-from`: the schema, the state tables' rows and optionally a sample of every
/// table's rows, read in one read-only snapshot.
pub(super) fn from_database(context: &Context, source: &SourceOptions<'_>) -> anyhow::Result<Base> {
    let mut options =
        ConnectOptions::parse(source.url).context("the --schema-from connection string")?;
    let lock_timeout = context.config.migrator.lock_timeout;
    let dump_source = dump_source(&options)?;
    options
        .config
        .application_name(&context.config.migrator.application_name)
        .options(format!(
            "-c default_transaction_read_only=on -c lock_timeout={}",
            lock_timeout.as_millis().max(1)
        ));
    let origin = dump_source.describe();
    block_on(async {
        let client = connect_with(options)
            .await
            .with_context(|| format!("connecting to the --schema-from database {origin}"))?;
        let version: String = client
            .query_one("SHOW server_version_num", &[])
            .await?
            .get(0);
        let major = version
            .trim()
            .parse::<u32>()
            .map(|number| number / 10_000)
            .ok();
        // pg_dump refuses a server newer than itself: production's own major's where installed.
        let program: PathBuf = match (source.pg_dump, major.and_then(PgBinaries::locate_major)) {
            (Some(path), _) => path.to_path_buf(),
            (None, Some(binaries)) => binaries.program("pg_dump"),
            (None, None) => PgBinaries::locate()?.program("pg_dump"),
        };
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await?
            .get(0);
        let schema = PgDump::with_program(&program, dump_source.clone())
            .schema_only()
            .snapshot(&snapshot)
            .lock_wait_timeout(lock_timeout)
            .run()
            .with_context(|| format!("dumping the schema of {origin}"))?;
        let mut rows = String::new();
        let mut sampled = Vec::new();
        for table in existing(&client, source.state_tables).await? {
            copy_rows(&client, &table, None, &mut rows).await?;
        }
        if let Some(limit) = source.sample_rows {
            for table in sampled_tables(&client, source.state_tables).await? {
                let copied = copy_rows(&client, &table, Some(limit), &mut rows).await?;
                sampled.push((table, copied));
            }
        }
        client.batch_execute("COMMIT").await?;
        anyhow::Ok(Base::Loaded {
            origin,
            schema,
            rows: with_triggers_off(&rows),
            sampled,
            production_major: major,
        })
    })?
}

/// libpq's view of the same connection string, for pg_dump: every part through environment
/// variables (the password included), never on its command line.
fn dump_source(options: &ConnectOptions) -> anyhow::Result<DumpSource> {
    use tokio_postgres::config::Host;
    let config = &options.config;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".to_owned());
    let dbname = config.get_dbname().unwrap_or(&user).to_owned();
    let ssl_mode = match options.ssl_mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    };
    let mut source = DumpSource::new(host, port, user, dbname).ssl_mode(ssl_mode);
    if let Some(timeout) = config.get_connect_timeout() {
        source = source.connect_timeout(*timeout);
    }
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .or_else(|| std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()));
    if let Some(password) = password {
        source = source.password(password);
    }
    if let Some(root) = &options.ssl_root_cert {
        source = source.ssl_root_cert(root);
    }
    Ok(source)
}

/// Those of `tables` (quoted names) that exist.
async fn existing(client: &Client, tables: &[String]) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for table in tables {
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
            .await?;
        if row.get::<_, bool>(0) {
            found.push(table.clone());
        }
    }
    Ok(found)
}

/// Every ordinary and partitioned table of the database but the state tables and partitions
/// (their rows come through their root), quoted.
async fn sampled_tables(client: &Client, state_tables: &[String]) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') \
               AND c.oid <> ALL (SELECT r FROM unnest($1::text[]) t, to_regclass(t) r \
                                 WHERE r IS NOT NULL) \
             ORDER BY 1",
            &[&state_tables],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
}

/// Appends `COPY table (columns) FROM stdin;` with up to `limit` rows (all without one) to
/// `script`; returns the rows copied. Generated columns are left out (the scratch side
/// computes them).
async fn copy_rows(
    client: &Client,
    table: &str,
    limit: Option<u64>,
    script: &mut String,
) -> anyhow::Result<u64> {
    let columns: Vec<String> = client
        .query(
            "SELECT quote_ident(attname) FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped \
               AND attgenerated = '' ORDER BY attnum",
            &[&table],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if columns.is_empty() {
        return Ok(0);
    }
    let list = columns.join(", ");
    let limit = limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
    // `table` and the columns are quoted by the server (format %I, quote_ident).
    let stream = client
        .copy_out(&format!(
            "COPY (SELECT {list} FROM {table}{limit}) TO STDOUT"
        ))
        .await
        .with_context(|| format!("reading the rows of {table}"))?;
    let mut data = Vec::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk?);
    }
    let text = String::from_utf8(data).context("rows that are not UTF-8")?;
    let copied = text.lines().count() as u64;
    if copied > 0 {
        let _ = writeln!(script, "COPY {table} ({list}) FROM stdin;");
        script.push_str(&text);
        script.push_str("\\.\n");
    }
    Ok(copied)
}

/// The rows script: foreign-key and user triggers off while it loads (`session_replication_role
/// = replica`, the scratch side only): a sample of each table is not referentially complete.
fn with_triggers_off(rows: &str) -> String {
    if rows.is_empty() {
        String::new()
    } else {
        format!("SET session_replication_role = replica;\n{rows}")
    }
}
