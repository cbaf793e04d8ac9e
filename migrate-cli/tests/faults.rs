//! Server faults in the middle of a run: PostgreSQL stopped (fast and immediate) and started
//! again, the migration session terminated with `pg_terminate_backend`, the server process
//! stalled (SIGSTOP: the TCP connection stays open and every packet is acknowledged, as
//! behind a proxy that stopped forwarding). Each time: a clear error within the configured
//! timeouts, nothing recorded as applied that was not, and the rerun converges to the schema
//! of a clean run with every backfill row updated exactly once.
//!
//! Each test has its own cluster: stopping the shared one would break the other tests.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use migrate_scratch::{ScratchCluster, ScratchDatabase};

fn migrate_up(db: &ScratchDatabase, dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("migrate"));
    command
        .arg("--dir")
        .arg(dir)
        .arg("up")
        .args(extra)
        .args(["--lock-wait", "60s", "--database-url"])
        .arg(format!("{}?sslmode=disable&connect_timeout=5", db.url()))
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn psql(cluster: &ScratchCluster, db: &ScratchDatabase, query: &str) -> String {
    cluster
        .psql(db.name(), query)
        .expect("psql")
        .trim()
        .to_owned()
}

/// Polls until the backfill has stored progress: the run is in its last migration. Polling
/// an observable state, not a sleep.
fn wait_for_backfill(cluster: &ScratchCluster, db: &ScratchDatabase, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = psql(
            cluster,
            db,
            "SELECT to_regclass('public.schema_migrations_backfill') IS NOT NULL",
        ) == "t"
            && psql(
                cluster,
                db,
                "SELECT count(*) > 0 FROM schema_migrations_backfill WHERE rows_done > 0",
            ) == "t";
        if started {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its backfill started"
        );
        assert!(Instant::now() < deadline, "the backfill never started");
        std::thread::yield_now();
    }
}

/// A cluster of the test's own, the fault set in a folder, and the schema a clean run of it
/// gives (what every rerun must converge to).
fn fault_cluster() -> (ScratchCluster, tempfile::TempDir, String) {
    let cluster = ScratchCluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_fault_set(dir.path());
    let clean = cluster.create_database().unwrap();
    assert!(
        migrate_up(&clean, dir.path(), &[])
            .status()
            .unwrap()
            .success()
    );
    let expected = schema_of(&cluster, &clean);
    (cluster, dir, expected)
}

/// What the history says is applied really is: every recorded migration's effect exists.
fn history_matches_schema(cluster: &ScratchCluster, db: &ScratchDatabase, context: &str) {
    let recorded = psql(
        cluster,
        db,
        "SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM schema_migrations",
    );
    let has = |query: &str| psql(cluster, db, query) == "t";
    for version in recorded.split(',').filter(|v| !v.is_empty()) {
        let present = match version {
            "1" => has("SELECT to_regclass('items') IS NOT NULL"),
            "2" => has("SELECT to_regclass('items_v_id') IS NOT NULL"),
            "3" => has("SELECT to_regclass('audit_note') IS NOT NULL"),
            "4" => has("SELECT NOT EXISTS (SELECT 1 FROM items WHERE NOT done)"),
            other => panic!("{context}: unexpected version {other}"),
        };
        assert!(
            present,
            "{context}: {version} is recorded as applied but is not"
        );
    }
}

fn converge(
    cluster: &ScratchCluster,
    db: &ScratchDatabase,
    dir: &Path,
    expected: &str,
    context: &str,
) {
    let rerun = migrate_up(db, dir, &[]).output().unwrap();
    assert!(
        rerun.status.success(),
        "{context}: the rerun fails: {}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(
        schema_of(cluster, db),
        expected,
        "{context}: schema differs"
    );
    assert_eq!(
        psql(
            cluster,
            db,
            "SELECT count(*) FROM items WHERE n <> 1 OR NOT done"
        ),
        "0",
        "{context}: a backfill row missed or done twice"
    );
    assert_eq!(
        psql(
            cluster,
            db,
            "SELECT count(*) FROM pg_index WHERE NOT indisvalid"
        ),
        "0",
        "{context}"
    );
}

fn finish(child: Child, within: Duration, context: &str) -> Output {
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < within,
        "{context}: the run took {:?} to fail",
        started.elapsed()
    );
    assert!(
        !output.status.success(),
        "{context}: the run cannot have succeeded"
    );
    output
}

#[test]
fn a_server_stopped_and_started_again_mid_run() {
    let (cluster, dir, expected) = fault_cluster();

    for immediate in [false, true] {
        let context = if immediate {
            "immediate stop"
        } else {
            "fast stop"
        };
        let db = cluster.create_database().unwrap();
        let mut child = migrate_up(&db, dir.path(), &[]).spawn().unwrap();
        wait_for_backfill(&cluster, &db, &mut child);
        cluster.stop_server(immediate).unwrap();
        let output = finish(child, Duration::from_secs(30), context);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.lines().any(|line| line.starts_with("error: ")),
            "{context}: {stderr}"
        );
        assert!(
            stderr.contains("connection")
                || stderr.contains("terminating")
                || stderr.contains("shut"),
            "{context}: {stderr}"
        );
        cluster.start_server_again().unwrap();
        history_matches_schema(&cluster, &db, context);
        converge(&cluster, &db, dir.path(), &expected, context);
    }
}

#[test]
fn a_terminated_session_and_a_stalled_server_mid_run() {
    let (cluster, dir, expected) = fault_cluster();

    // pg_terminate_backend on the migration session.
    let db = cluster.create_database().unwrap();
    let mut child = migrate_up(&db, dir.path(), &[]).spawn().unwrap();
    wait_for_backfill(&cluster, &db, &mut child);
    psql(
        &cluster,
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'migrate' AND datname = current_database()",
    );
    let output = finish(child, Duration::from_secs(30), "terminated");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The server sends 57P01 and closes; when the termination lands between two statements
    // the client may see only the closed socket (its next write fails before it reads the
    // message), so "connection closed" is what it can honestly say then.
    assert!(
        stderr.contains("57P01")
            || stderr.contains("terminating connection")
            || stderr.contains("connection closed"),
        "{stderr}"
    );
    history_matches_schema(&cluster, &db, "terminated");
    converge(&cluster, &db, dir.path(), &expected, "terminated");

    // The server process stops answering: the client's own bound ends the run.
    let db = cluster.create_database().unwrap();
    let mut child = migrate_up(
        &db,
        dir.path(),
        &["--network-timeout", "2s", "--statement-timeout", "3s"],
    )
    .spawn()
    .unwrap();
    wait_for_backfill(&cluster, &db, &mut child);
    let pid = psql(
        &cluster,
        &db,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'migrate' AND datname = current_database()",
    );
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = finish(child, Duration::from_secs(20), "stalled");
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no answer from PostgreSQL within"),
        "{stderr}"
    );
    history_matches_schema(&cluster, &db, "stalled");
    converge(&cluster, &db, dir.path(), &expected, "stalled");
}

/// A TCP proxy in front of the server that can stop forwarding (both directions) while
/// keeping every connection open: a network path that silently drops traffic.
struct StallingProxy {
    port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    fn start(target_port: u16) -> StallingProxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stalled);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            let Ok(read) = from.read(&mut buffer) else {
                                return;
                            };
                            if read == 0 {
                                let _ = to.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            // Stalled: hold the bytes forever (the connection stays open).
                            while flag.load(Ordering::Relaxed) {
                                std::thread::park_timeout(Duration::from_millis(50));
                            }
                            if to.write_all(&buffer[..read]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        StallingProxy { port, stalled }
    }

    fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_network_path_that_stops_forwarding_mid_run() {
    let (cluster, dir, expected) = fault_cluster();

    let db = cluster.create_database().unwrap();
    let proxy = StallingProxy::start(cluster.port());
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("migrate"))
        .arg("--dir")
        .arg(dir.path())
        .args([
            "up",
            "--network-timeout",
            "2s",
            "--statement-timeout",
            "3s",
            "--database-url",
        ])
        .arg(format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable&connect_timeout=5",
            proxy.port,
            db.name()
        ))
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_backfill(&cluster, &db, &mut child);
    proxy.stall();
    let output = finish(child, Duration::from_secs(20), "stalled network");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no answer from PostgreSQL within"),
        "{stderr}"
    );
    // The server still has the session (it saw nothing wrong); ending it frees its lock.
    psql(
        &cluster,
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'migrate' AND datname = current_database()",
    );
    history_matches_schema(&cluster, &db, "stalled network");
    converge(&cluster, &db, dir.path(), &expected, "stalled network");
}
