//! Comparing schemas with `pg_dump --schema-only`: where a real database is dumped from, and
//! the dump cleaned of what differs between two databases with the same objects (owners,
//! privileges, comments, session settings). Used by `baseline` and `squash`.

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
        let noise = trimmed.is_empty()
            || trimmed.starts_with("--")
            || trimmed.starts_with("SET ")
            || trimmed.starts_with("SELECT pg_catalog.set_config(")
            || trimmed.starts_with("GRANT ")
            || trimmed.starts_with("REVOKE ")
            || trimmed.starts_with("ALTER DEFAULT PRIVILEGES ")
            || (trimmed.starts_with("ALTER ") && trimmed.contains(" OWNER TO "));
        if !noise {
            kept.push(line);
        }
    }
    kept.join("\n")
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
}
