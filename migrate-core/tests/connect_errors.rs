//! Connection failures say where (host:port or socket) and why, the OS's or resolver's cause
//! included, through `{}`, `{:?}` and the source chain, and never the password.

mod common;

use migrate_core::runtime::{ConnectError, connect};

use common::{cluster, config, tls_cluster};

const PASSWORD: &str = "n0t-in-any-message";

/// `{}`, `{:?}` and every source, as a reporter walking the chain prints them.
fn everything_printed(error: &ConnectError) -> (String, String, String) {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    (error.to_string(), format!("{error:?}"), chain)
}

fn assert_says(error: &ConnectError, parts: &[&str]) {
    let (display, debug, chain) = everything_printed(error);
    for text in [&display, &debug, &chain] {
        for part in parts {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
        assert!(!text.contains(PASSWORD), "password leaked: {text}");
    }
}

fn free_port() -> u16 {
    // Free a moment ago: nothing listens on it.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_refused_connection_names_the_address_and_the_os_cause() {
    let port = free_port();
    let error = connect(
        &format!("postgres://u:{PASSWORD}@127.0.0.1:{port}/db?sslmode=disable"),
        &config(),
    )
    .await
    .expect_err("nothing listens");
    assert!(
        matches!(&error, ConnectError::Connect { target, .. } if *target == format!("127.0.0.1:{port}")),
        "{error:?}"
    );
    assert_says(
        &error,
        &[&format!("at 127.0.0.1:{port}"), "Connection refused"],
    );
}

#[tokio::test]
async fn an_unresolvable_host_names_the_host_and_the_resolver_cause() {
    let error = connect(
        &format!("postgres://u:{PASSWORD}@no-such-host.invalid:6543/db?sslmode=disable"),
        &config(),
    )
    .await
    .expect_err("no such host");
    assert!(matches!(error, ConnectError::Connect { .. }), "{error:?}");
    assert_says(
        &error,
        &["at no-such-host.invalid:6543", "failed to lookup address"],
    );
}

#[tokio::test]
async fn several_hosts_are_all_named() {
    let (first, second) = (free_port(), free_port());
    let error = connect(
        &format!("host=127.0.0.1,localhost port={first},{second} user=u sslmode=disable"),
        &config(),
    )
    .await
    .expect_err("nothing listens");
    assert_says(
        &error,
        &[&format!("at 127.0.0.1:{first}, localhost:{second}")],
    );
}

#[tokio::test]
async fn tls_required_of_a_server_without_tls_says_so() {
    let db = cluster().create_database().expect("db");
    let error = connect(&format!("{}?sslmode=require", db.url()), &config())
        .await
        .expect_err("no TLS on this cluster");
    assert!(matches!(error, ConnectError::Connect { .. }), "{error:?}");
    assert_says(
        &error,
        &[
            &format!("at 127.0.0.1:{}", cluster().port()),
            "TLS handshake",
            "server does not support TLS",
            "sslmode=prefer or disable",
        ],
    );
}

#[tokio::test]
async fn a_missing_password_says_the_server_asked_for_one() {
    if std::env::var_os("PGPASSWORD").is_some() {
        panic!("PGPASSWORD is set: this test needs it unset to connect without a password");
    }
    let Some(cluster) = tls_cluster() else {
        return;
    };
    cluster
        .create_login_role("bob_no_password", PASSWORD)
        .expect("role");
    let url = format!(
        "postgres://bob_no_password@127.0.0.1:{}/postgres?sslmode=require",
        cluster.port()
    );
    let error = connect(&url, &config()).await.expect_err("no password");
    assert!(matches!(error, ConnectError::Connect { .. }), "{error:?}");
    assert_says(
        &error,
        &[
            &format!("at 127.0.0.1:{}", cluster.port()),
            "password missing",
            "asks for a password and none was given",
        ],
    );
}
