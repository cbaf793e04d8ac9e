//! A real cluster: start, two databases, queries over TCP, TLS, and no server left behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use migrate_scratch::{ScratchCluster, ScratchError};

async fn select_one(url: &str) -> Result<i32, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let row = client.query_one("SELECT 1", &[]).await?;
    drop(client);
    let _ = task.await;
    Ok(row.get(0))
}

#[tokio::test]
async fn two_databases_answer_select_one() -> Result<(), ScratchError> {
    let cluster = ScratchCluster::start()?;
    let first = cluster.create_database()?;
    let second = cluster.create_database()?;
    assert_ne!(first.name(), second.name());
    assert_eq!(first.port(), cluster.port());
    assert_eq!(
        first.url(),
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            cluster.port(),
            first.name()
        )
    );
    for database in [&first, &second] {
        assert_eq!(select_one(database.url()).await.expect("SELECT 1"), 1);
        let name = cluster.psql(database.name(), "SELECT current_database()")?;
        assert_eq!(name.trim(), database.name());
    }
    Ok(())
}

#[test]
fn drop_stops_the_server_and_removes_the_folder() -> Result<(), ScratchError> {
    let cluster = ScratchCluster::start()?;
    let data_dir: PathBuf = cluster.data_dir().to_path_buf();
    let pid = postmaster_pid(&data_dir);
    drop(cluster);
    assert!(!data_dir.exists(), "data folder left behind");
    wait_until_gone(pid);
    Ok(())
}

fn postmaster_pid(data_dir: &std::path::Path) -> i32 {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .expect("pid in postmaster.pid")
}

/// `pg_ctl stop -w` returns once postmaster.pid is gone, which the postmaster removes just
/// before it exits, and init reaps it asynchronously: so poll, with a deadline, until the
/// process is gone or a zombie.
fn wait_until_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let running = state.as_deref().is_some_and(|stat| {
            // The field after the parenthesised command name is the state letter.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        });
        if !running {
            return;
        }
        assert!(Instant::now() < deadline, "postmaster {pid} still running");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const LEAK_HELPER_ENV: &str = "MIGRATE_SCRATCH_LEAK_HELPER";

/// Run by `a_process_exit_without_drop_still_stops_the_server` in a child process: starts a
/// cluster, prints its data folder, and exits without running any destructor.
#[test]
fn leak_helper() {
    if std::env::var_os(LEAK_HELPER_ENV).is_none() {
        return;
    }
    let cluster = ScratchCluster::start().expect("start");
    println!("DATA_DIR={}", cluster.data_dir().display());
    println!("PID={}", postmaster_pid(cluster.data_dir()));
    std::process::exit(0);
}

#[test]
fn a_process_exit_without_drop_still_stops_the_server() {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "leak_helper", "--nocapture", "--test-threads=1"])
        .env(LEAK_HELPER_ENV, "1")
        .output()
        .expect("helper process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            // libtest prints "test leak_helper ... " on the line of the first field.
            .find_map(|line| line.split_once(name).map(|(_, value)| value))
            .unwrap_or_else(|| panic!("helper printed no {name}: {stdout}"))
            .to_owned()
    };
    let data_dir = PathBuf::from(field("DATA_DIR="));
    let pid: i32 = field("PID=").parse().expect("pid");
    wait_until_gone(pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    while data_dir.exists() {
        assert!(Instant::now() < deadline, "scratch folder left behind");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn tls_cluster_serves_tls_and_exposes_its_ca() -> Result<(), ScratchError> {
    let cluster = match ScratchCluster::start_with_tls() {
        Err(ScratchError::NotInThisBuild { feature, binaries }) => {
            eprintln!(
                "skipped: {feature} is not in the build of {}",
                binaries.display()
            );
            return Ok(());
        }
        started => started?,
    };
    let tls = cluster.tls().expect("tls files");
    let pem = std::fs::read_to_string(&tls.ca_cert).expect("CA PEM");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let database = cluster.create_database()?;
    let on = cluster.psql(database.name(), "SHOW ssl")?;
    assert_eq!(on.trim(), "on");
    Ok(())
}

#[test]
fn password_roles_need_their_password() -> Result<(), ScratchError> {
    let cluster = ScratchCluster::start()?;
    cluster.create_login_role("alice", "s3cret'pw")?;
    let status = std::process::Command::new(cluster.binaries().program("psql"))
        .args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-U",
            "alice",
            "-d",
            "postgres",
            "-c",
            "SELECT 1",
        ])
        .arg("-p")
        .arg(cluster.port().to_string())
        .env("PGPASSWORD", "wrong")
        .env("PGSSLMODE", "disable")
        .output()
        .expect("psql");
    assert!(!status.status.success(), "wrong password accepted");
    let status = std::process::Command::new(cluster.binaries().program("psql"))
        .args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-U",
            "alice",
            "-d",
            "postgres",
            "-c",
            "SELECT 1",
        ])
        .arg("-p")
        .arg(cluster.port().to_string())
        .env("PGPASSWORD", "s3cret'pw")
        .env("PGSSLMODE", "disable")
        .output()
        .expect("psql");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    Ok(())
}

/// Polls `condition` every 20 ms until it holds; panics with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_replica_streams_the_primary_and_is_stopped_on_drop() -> Result<(), ScratchError> {
    let primary = ScratchCluster::start()?;
    let replica = primary.start_replica()?;
    assert_ne!(replica.port(), primary.port());
    assert_ne!(replica.socket_dir(), primary.socket_dir());
    let name = replica
        .replica_name()
        .expect("a replica has a name")
        .to_owned();
    assert_eq!(primary.replica_name(), None);
    assert_eq!(
        replica
            .psql("postgres", "SELECT pg_is_in_recovery()")?
            .trim(),
        "t"
    );

    // The primary sees the standby under its cluster_name, connected over TCP, once its WAL
    // receiver has connected, which may be after the standby accepts connections (14).
    let expected = format!("{name} 127.0.0.1 streaming");
    let mut row = String::new();
    wait_for(
        "the standby in pg_stat_replication",
        Duration::from_secs(30),
        || {
            row = primary
                .psql(
                    "postgres",
                    "SELECT application_name || ' ' || host(client_addr) || ' ' || state \
                 FROM pg_stat_replication",
                )
                .unwrap_or_default();
            !row.trim().is_empty() && row.trim() != format!("{name} 127.0.0.1 startup")
        },
    );
    assert_eq!(row.trim(), expected);

    primary.psql(
        "postgres",
        "CREATE TABLE replicated (id int); INSERT INTO replicated VALUES (42)",
    )?;
    wait_for("the table on the standby", Duration::from_secs(30), || {
        replica
            .psql("postgres", "SELECT coalesce(sum(id), 0) FROM replicated")
            .is_ok_and(|out| out.trim() == "42")
    });

    let data_dir = replica.data_dir().to_path_buf();
    let pid = postmaster_pid(&data_dir);
    drop(replica);
    assert!(!data_dir.exists(), "replica folder left behind");
    wait_until_gone(pid);
    Ok(())
}

#[test]
fn the_server_runs_the_major_asked_for() -> Result<(), ScratchError> {
    let cluster = ScratchCluster::start()?;
    let version = cluster.version();
    eprintln!("{version} from {}", cluster.binaries().dir().display());
    let number: u32 = cluster
        .psql("postgres", "SHOW server_version_num")?
        .trim()
        .parse()
        .expect("server_version_num");
    assert_eq!(number / 10_000, version.major);
    if let Ok(asked) = std::env::var(migrate_scratch::PG_MAJOR_ENV) {
        assert_eq!(version.major.to_string(), asked.trim());
    }
    Ok(())
}
