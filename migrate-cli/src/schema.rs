//! Comparing schemas with `pg_dump --schema-only`: where a real database is dumped from, and
//! the dump cleaned of what differs between two databases with the same objects (owners,
//! privileges, comments, session settings). Used by `baseline` and `squash`; `squash` also
//! takes a dump apart into the statements of its migration.

use migrate_core::runtime::connect::{ConnectOptions, SslMode};
use migrate_scratch::DumpSource;
use tokio_postgres::config::Host;

use crate::config::DatabaseUrl;

/// Other tools' history tables, never part of the schema a migration set makes.
pub const OTHER_TOOLS_TABLES: [&str; 5] = [
    "public._sqlx_migrations",
    "public.refinery_schema_history",
    "public.flyway_schema_history",
    "public.__diesel_schema_migrations",
    "public.schema_migrations",
];

/// Where `pg_dump` reaches the database of `url`: its first host, port, user, database and
/// password (else `PGPASSWORD`), TLS mode and roots; the password only ever in `PGPASSWORD`.
pub fn dump_source(url: &DatabaseUrl) -> anyhow::Result<DumpSource> {
    let options = ConnectOptions::parse(&url.url)?;
    let config = &options.config;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.to_string_lossy().into_owned(),
        None => "localhost".to_owned(),
    };
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let dbname = config.get_dbname().unwrap_or(&user).to_owned();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut source = DumpSource::new(host, port, user, dbname).ssl_mode(match options.ssl_mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    });
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .or_else(|| std::env::var("PGPASSWORD").ok());
    if let Some(password) = password {
        source = source.password(password);
    }
    if let Some(root) = options.ssl_root_cert {
        source = source.ssl_root_cert(root);
    }
    Ok(source)
}

/// A schema dump without what two databases with the same objects may still differ in:
/// comments (they name owners), blank lines, session `SET`s and `set_config` calls, owners
/// (`ALTER ... OWNER TO`) and privileges (`GRANT`, `REVOKE`, default privileges).
pub fn clean(dump: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in dump.lines() {
        let trimmed = line.trim_start();
        let noise = trimmed.is_empty() || trimmed.starts_with("--") || is_session_or_owner(trimmed);
        if !noise {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// The statements of a schema dump that make objects, in the dump's order and as it wrote
/// them (function bodies untouched): without comments between statements, session settings,
/// owners and privileges ([`clean`]'s noise, read statement by statement here so that a
/// line inside a function body is never taken for it).
pub fn object_statements(dump: &str) -> anyhow::Result<Vec<&str>> {
    let statements = migrate_core::splitter::statement_texts(dump).map_err(|e| {
        anyhow::anyhow!(
            "pg_dump's output could not be read at line {}, column {}: {}",
            e.line,
            e.column,
            e.what
        )
    })?;
    Ok(statements
        .into_iter()
        .filter(|s| !s.is_empty() && !is_session_or_owner(s))
        .collect())
}

/// A session setting, `set_config` call, owner or privilege: what [`clean`] and
/// [`object_statements`] leave out, for a line or a statement.
fn is_session_or_owner(text: &str) -> bool {
    text.starts_with("SET ")
        || text.starts_with("SELECT pg_catalog.set_config(")
        || text.starts_with("GRANT ")
        || text.starts_with("REVOKE ")
        || text.starts_with("ALTER DEFAULT PRIVILEGES ")
        || (text.starts_with("ALTER ") && text.contains(" OWNER TO "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_privileges_comments_and_settings_are_left_out() {
        let dump = "--\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n--\n\nSET lock_timeout = 0;\n\
                    SELECT pg_catalog.set_config('search_path', '', false);\n\
                    CREATE TABLE public.t (\n    id bigint\n);\n\nALTER TABLE public.t OWNER TO app;\n\
                    GRANT SELECT ON TABLE public.t TO reader;\n";
        assert_eq!(clean(dump), "CREATE TABLE public.t (\n    id bigint\n);");
    }

    #[test]
    fn object_statements_keep_function_bodies_whole() {
        let dump = "--\n-- Name: f; Type: FUNCTION\n--\n\nSET check_function_bodies = false;\n\
                    CREATE FUNCTION public.f() RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$\n\
                    BEGIN\n-- a comment inside\n\n  SET LOCAL x = 1;\n  RETURN NEW;\nEND $$;\n\n\
                    ALTER FUNCTION public.f() OWNER TO app;\n\
                    COMMENT ON TABLE public.t IS 'kept';\nREVOKE ALL ON TABLE public.t FROM x;\n";
        assert_eq!(
            object_statements(dump).unwrap(),
            [
                "CREATE FUNCTION public.f() RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$\n\
                 BEGIN\n-- a comment inside\n\n  SET LOCAL x = 1;\n  RETURN NEW;\nEND $$",
                "COMMENT ON TABLE public.t IS 'kept'",
            ]
        );
    }
}
