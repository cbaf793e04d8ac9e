//! Shared helpers of the runtime integration tests: one scratch cluster per test binary
//! (stopped by its watchdog when the binary exits), one database per test.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod log;
pub mod users;

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use migrate_core::runtime::{MigratorConfig, connect};
use migrate_core::{Checksum, Migration, Migrations, Phase, Section, Statement, TransactionMode};
use migrate_scratch::{ScratchCluster, ScratchDatabase};
use tokio_postgres::Client;

pub fn cluster() -> &'static ScratchCluster {
    static CLUSTER: OnceLock<ScratchCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = ScratchCluster::start().expect("scratch cluster");
        // Which server the binary's tests run on ($MIGRATE_PG_MAJOR picks it).
        eprintln!(
            "scratch cluster: {} ({})",
            cluster.version(),
            cluster.binaries().dir().display()
        );
        cluster
    })
}

/// The binary's TLS cluster; `None`, said once, where the server build has no TLS (a test
/// needing it then returns: skipped).
pub fn tls_cluster() -> Option<&'static ScratchCluster> {
    static CLUSTER: OnceLock<Option<ScratchCluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| match ScratchCluster::start_with_tls() {
            Ok(cluster) => Some(cluster),
            Err(migrate_scratch::ScratchError::NotInThisBuild { feature, binaries }) => {
                eprintln!(
                    "skipped: {feature} is not in the build of {}: its tests skip",
                    binaries.display()
                );
                None
            }
            Err(error) => panic!("TLS scratch cluster: {error}"),
        })
        .as_ref()
}

/// Whether the scratch server's build has the extension; says so when not, for the test to
/// skip.
pub fn has_extension(name: &str) -> bool {
    let found = cluster()
        .has_extension(name)
        .expect("pg_available_extensions");
    cluster().says_skipped_without(found, name)
}

/// Whether the scratch server's build has the collation (ICU's need ICU); says so when not,
/// for the test to skip.
pub fn has_collation(name: &str) -> bool {
    let found = cluster().has_collation(name).expect("pg_collation");
    cluster().says_skipped_without(found, &format!("collation {name}"))
}

pub fn database() -> ScratchDatabase {
    cluster().create_database().expect("scratch database")
}

/// Settings that keep tests fast: short lock waits and retry pauses.
pub fn config() -> MigratorConfig {
    MigratorConfig {
        application_name: "migrate-test".into(),
        lock_timeout: Duration::from_millis(300),
        retry_backoff: Duration::from_millis(50),
        lock_wait: Duration::from_secs(30),
        ..MigratorConfig::default()
    }
}

pub async fn client(url: &str) -> Client {
    connect(url, &config()).await.expect("connect")
}

/// Applies `migrations` up to `version` with the tests' [`config`]: where a test that
/// starts before a migration stands.
pub async fn up_to(client: &Client, migrations: &Migrations, version: u64) {
    migrate_core::runtime::Migrator::new(migrations, config())
        .unwrap()
        .up(client, migrate_core::runtime::UpTo::Version(version))
        .await
        .unwrap();
}

/// Polls `query` (a boolean) on `client` every 10 ms until it is true; panics after 30 s.
/// For what PostgreSQL shows only in its views (a session waiting, a vacuum running): it
/// has no notification to wait on.
pub async fn wait_until(client: &Client, what: &str, query: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done: bool = client.query_one(query, &[]).await.expect(query).get(0);
        if done {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain connection for the test's own queries (blockers, readers, assertions).
pub async fn plain_client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Builds a migration the way the loader would: the file text is rendered from the
/// statements, statement positions point into it, and the checksum is that of the text.
pub fn migration(
    version: u64,
    name: &str,
    up: &[&str],
    down: Option<&[&str]>,
    mode: TransactionMode,
) -> Migration {
    let mut text = String::new();
    let mut line = 1u32;
    if mode == TransactionMode::Autocommit {
        text.push_str("-- migrate:no-transaction\n");
        line += 1;
    }
    let mut section = |text: &mut String, header: &str, statements: &[&str]| -> Section {
        text.push_str(header);
        text.push('\n');
        line += 1;
        let mut parsed = Vec::new();
        for sql in statements {
            parsed.push(Statement {
                sql: Cow::Owned((*sql).to_owned()),
                line,
                column: 1,
                non_transactional: mode == TransactionMode::Autocommit
                    && sql.to_ascii_uppercase().contains("CONCURRENTLY"),
            });
            text.push_str(sql);
            text.push_str(";\n");
            line += sql.matches('\n').count() as u32 + 1;
        }
        Section {
            statements: Cow::Owned(parsed),
            mode,
            file_name: None,
        }
    };
    let up = section(&mut text, "-- migrate:up", up);
    let down = down.map(|down| section(&mut text, "-- migrate:down", down));
    Migration {
        version,
        name: Cow::Owned(name.to_owned()),
        phase: Phase::Expand,
        file_name: Cow::Owned(format!("{version:04}_{name}.sql")),
        checksum: Checksum::of_file(text.as_bytes()),
        up,
        down,
        requires: None,
        backfill: None,
        compare: None,
        compare_line: None,
        requires_compare: false,
        replaces: Default::default(),
        analysis: None,
    }
}

pub fn tx(version: u64, name: &str, up: &[&str], down: &[&str]) -> Migration {
    migration(
        version,
        name,
        up,
        Some(down),
        TransactionMode::Transactional,
    )
}

pub fn set(migrations: Vec<Migration>) -> Migrations {
    set_in("/nonexistent/migrate-test-migrations", migrations)
}

pub fn set_in(dir: &str, migrations: Vec<Migration>) -> Migrations {
    Migrations::new(dir, migrations).expect("versions differ")
}

pub async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

pub async fn history_versions(client: &Client) -> Vec<i64> {
    client
        .query(
            "SELECT version FROM public.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|row| row.get(0))
        .collect()
}
