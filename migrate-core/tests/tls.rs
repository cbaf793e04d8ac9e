//! TLS modes and password hygiene against a TLS-enabled scratch cluster.

mod common;

use common::{config, set, tls_cluster, tx};
use migrate_core::runtime::{ConnectError, Migrator, RuntimeError, UpTo, connect};
use tokio_postgres::error::SqlState;

fn ca_path() -> String {
    let ca = &tls_cluster()
        .expect("a TLS cluster")
        .tls()
        .expect("tls")
        .ca_cert;
    ca.to_str().expect("utf8 path").to_owned()
}

/// Percent-encodes a path for a URL query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    let Some(cluster) = tls_cluster() else {
        return;
    };
    let db = cluster.create_database().expect("db");
    let client = connect(&format!("{}?sslmode=require", db.url()), &config())
        .await
        .expect("require");
    assert!(uses_tls(&client).await);
}

#[tokio::test]
async fn sslmode_disable_connects_in_plain_text() {
    let Some(cluster) = tls_cluster() else {
        return;
    };
    let db = cluster.create_database().expect("db");
    let client = connect(&format!("{}?sslmode=disable", db.url()), &config())
        .await
        .expect("disable");
    assert!(!uses_tls(&client).await);
}

#[tokio::test]
async fn verify_full_with_the_scratch_ca_connects_by_ip_and_by_name() {
    let Some(cluster) = tls_cluster() else {
        return;
    };
    let db = cluster.create_database().expect("db");
    let ca = encode(&ca_path());
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "postgres://postgres@{host}:{}/{}?sslmode=verify-full&sslrootcert={ca}",
            db.port(),
            db.name()
        );
        let client = connect(&url, &config()).await.expect("verify-full");
        assert!(uses_tls(&client).await);
    }
    let url = format!("{}?sslmode=verify-ca&sslrootcert={ca}", db.url());
    let client = connect(&url, &config()).await.expect("verify-ca");
    assert!(uses_tls(&client).await);
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_from_an_unknown_ca() {
    let Some(cluster) = tls_cluster() else {
        return;
    };
    let db = cluster.create_database().expect("db");
    // No sslrootcert: the public web roots, which did not sign the scratch CA.
    let error = connect(&format!("{}?sslmode=verify-full", db.url()), &config())
        .await
        .expect_err("untrusted CA");
    assert!(matches!(error, ConnectError::Connect { .. }), "{error:?}");
}

const PASSWORD: &str = "Tr0ub4dor-and-3";

fn assert_no_password(text: &str) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    assert!(
        !text.contains("wrong-horse-battery"),
        "password leaked: {text}"
    );
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = format!("{error} / {error:?}");
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(&format!(" / {inner} / {inner:?}"));
        source = inner.source();
    }
    text
}

#[tokio::test]
async fn a_wrong_password_fails_without_showing_the_password() {
    let Some(cluster) = tls_cluster() else {
        return;
    };
    cluster
        .create_login_role("alice_wrong", PASSWORD)
        .expect("role");
    let url = format!(
        "postgres://alice_wrong:wrong-horse-battery@127.0.0.1:{}/postgres?sslmode=require",
        cluster.port()
    );
    let error = connect(&url, &config()).await.expect_err("wrong password");
    match &error {
        ConnectError::Connect { error, .. } => {
            assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD));
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert_no_password(&error_chain(&error));
}

#[tokio::test]
async fn a_failing_migration_over_a_password_connection_does_not_show_the_password() {
    let Some(cluster) = tls_cluster() else {
        return;
    };
    cluster
        .create_login_role("alice_migrates", PASSWORD)
        .expect("role");
    let db = cluster.create_database().expect("db");
    cluster
        .psql(db.name(), "GRANT CREATE ON SCHEMA public TO alice_migrates")
        .expect("grant");
    let url = format!(
        "postgres://alice_migrates:{PASSWORD}@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
        db.port(),
        db.name(),
        encode(&ca_path())
    );
    let client = connect(&url, &config()).await.expect("correct password");
    assert!(uses_tls(&client).await);
    let migrations = set(vec![
        tx(1, "ok", &["CREATE TABLE ok (id int)"], &["DROP TABLE ok"]),
        tx(2, "fails", &["SELECT 1/0"], &[]),
    ]);
    let error = Migrator::new(&migrations, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("division by zero");
    assert!(matches!(error.error(), RuntimeError::Statement { .. }));
    assert_eq!(error.report.versions(), vec![1]);
    assert_no_password(&error_chain(&error));
}
