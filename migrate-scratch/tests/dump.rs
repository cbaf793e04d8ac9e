//! `PgDump` and `load_sql` on a real cluster: a schema with an owner role and grants goes from
//! one database into an empty one and dumps the same there; a script that fails keeps
//! nothing; a missing pg_dump and a wrong password are clear errors that never show the
//! password.

use migrate_scratch::{DumpSource, PgDump, ScratchCluster, ScratchError};

const SCHEMA: &str = "CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader NOLOGIN;
CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL CHECK (total >= 0));
CREATE INDEX orders_total ON orders (total);
ALTER TABLE orders OWNER TO app_owner;
GRANT SELECT ON orders TO app_reader;
INSERT INTO orders VALUES (1, 10), (2, 20);";

#[test]
fn a_schema_with_its_roles_loads_into_another_cluster_and_dumps_the_same()
-> Result<(), ScratchError> {
    let source_cluster = ScratchCluster::start()?;
    let source = source_cluster.create_database()?;
    source_cluster.psql(source.name(), SCHEMA)?;
    let dumped = PgDump::new(source_cluster.binaries(), DumpSource::scratch(&source))
        .schema_only()
        .run()?;
    assert!(dumped.contains("CREATE TABLE public.orders"), "{dumped}");
    assert!(!dumped.contains("INSERT") && !dumped.contains("COPY"));
    assert!(!dumped.contains("\\restrict"));

    // Another cluster lacks both roles: they are created, and the load succeeds.
    let target_cluster = ScratchCluster::start()?;
    let target = target_cluster.create_database()?;
    let mut roles = target_cluster.load_sql(&target, &dumped)?;
    roles.sort();
    assert_eq!(roles, ["app_owner", "app_reader"]);
    assert_eq!(target_cluster.schema_of(&target, &[])?, dumped);
    let owner = target_cluster.psql(
        target.name(),
        "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'",
    )?;
    assert_eq!(owner.trim(), "app_owner");

    // Rows of one table only, as COPY, load too.
    let rows = PgDump::new(source_cluster.binaries(), DumpSource::scratch(&source))
        .data_only()
        .table("public.orders")
        .run()?;
    target_cluster.load_sql(&target, &rows)?;
    let count = target_cluster.psql(target.name(), "SELECT count(*) FROM orders")?;
    assert_eq!(count.trim(), "2");
    Ok(())
}

#[test]
fn a_script_that_fails_keeps_nothing_and_says_why() -> Result<(), ScratchError> {
    let cluster = ScratchCluster::start()?;
    let database = cluster.create_database()?;
    let error = cluster
        .load_sql(
            &database,
            "CREATE TABLE kept_if_broken (id int);\nCREATE TABLE t (id no_such_type);\n",
        )
        .expect_err("an unknown type");
    assert!(matches!(error, ScratchError::LoadFailed { .. }), "{error}");
    assert!(error.to_string().contains("no_such_type"), "{error}");
    let tables = cluster.psql(
        database.name(),
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )?;
    assert_eq!(tables.trim(), "0", "one transaction: nothing kept");
    Ok(())
}

#[test]
fn a_missing_pg_dump_and_a_wrong_password_are_clear_errors() -> Result<(), ScratchError> {
    let cluster = ScratchCluster::start()?;
    let database = cluster.create_database()?;
    let missing = PgDump::with_program("/nonexistent/pg_dump", DumpSource::scratch(&database))
        .schema_only()
        .run()
        .expect_err("no such program");
    assert!(
        matches!(&missing, ScratchError::ProgramMissing { program } if program.ends_with("pg_dump")),
        "{missing}"
    );
    assert!(missing.to_string().contains("postgresql-client"));

    // The password goes through PGPASSWORD: neither the command line nor the error holds it.
    cluster.create_login_role("dumper", "s3cret-pass")?;
    let source = DumpSource::new(cluster.host(), cluster.port(), "dumper", database.name())
        .ssl_mode("disable")
        .password("wrong-s3cret");
    let refused = PgDump::new(cluster.binaries(), source)
        .schema_only()
        .run()
        .expect_err("wrong password");
    let text = refused.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("wrong-s3cret"), "{text}");
    assert!(
        text.contains(&format!("dumper@127.0.0.1:{}", cluster.port())),
        "{text}"
    );
    Ok(())
}

#[test]
fn every_session_pg_dump_opens_is_read_only() -> Result<(), ScratchError> {
    // A stand-in for pg_dump that tries to write, with the environment PgDump gives pg_dump:
    // the server refuses (SQLSTATE 25006) and nothing is created.
    let cluster = ScratchCluster::start()?;
    let database = cluster.create_database()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = dir.path().join("pg_dump");
    std::fs::write(
        &writer,
        format!(
            "#!/bin/sh\nexec {} -X -v ON_ERROR_STOP=1 -c 'CREATE TABLE written (id int)'\n",
            cluster.binaries().program("psql").display()
        ),
    )
    .expect("write script");
    let mut permissions = std::fs::metadata(&writer).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&writer, permissions).expect("chmod");
    let error = PgDump::with_program(&writer, DumpSource::scratch(&database))
        .run()
        .expect_err("a write in a read-only session");
    assert!(
        error.to_string().contains("read-only transaction"),
        "{error}"
    );
    let tables = cluster.psql(
        database.name(),
        "SELECT count(*) FROM pg_tables WHERE tablename = 'written'",
    )?;
    assert_eq!(tables.trim(), "0");
    Ok(())
}
