//! Connection failures, as the CLI prints them and as anyhow carries them: where (host:port)
//! and the OS's or resolver's cause, never the password.

mod common;

use common::*;

const PASSWORD: &str = "s3cr3t-never-printed";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn every_database_command_names_the_address_and_cause_of_a_failed_connection() {
    let port = free_port();
    for (url, parts) in [
        (
            format!("postgres://u:{PASSWORD}@127.0.0.1:{port}/app?sslmode=disable"),
            vec![format!("127.0.0.1:{port}"), "Connection refused".to_owned()],
        ),
        (
            format!("postgres://u:{PASSWORD}@no-such-host.invalid/app?sslmode=disable"),
            vec![
                "no-such-host.invalid:5432".to_owned(),
                "failed to lookup address".to_owned(),
            ],
        ),
    ] {
        for line in [
            &["status"][..],
            &["up"],
            &["reconcile"],
            &["flag", "list"],
            &["backfill", "pause"],
        ] {
            let output = migrate()
                .args(["--dir", "migrations"])
                .args(line)
                .args(["--database-url", &url])
                .output()
                .unwrap();
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(1), "{line:?}: {text}");
            for part in &parts {
                assert!(
                    text.contains(part.as_str()),
                    "{line:?}: {part} missing: {text}"
                );
            }
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }
}

#[test]
fn anyhow_keeps_the_cause_in_every_format() {
    let port = free_port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let error = runtime
        .block_on(migrate_core::runtime::connect(
            &format!("postgres://u:{PASSWORD}@127.0.0.1:{port}/app?sslmode=disable"),
            &migrate_core::runtime::MigratorConfig::default(),
        ))
        .expect_err("nothing listens");
    let error = anyhow::Error::from(error).context("opening the migration connection");
    for text in [
        format!("{error:#}"),
        format!("{error:?}"),
        format!("{}", error.root_cause()),
    ] {
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("Connection refused"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}
