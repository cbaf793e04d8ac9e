//! Reverting: newest first, refused before anything runs without a down part, and up, down, up
//! giving the schema of a single up.

use crate::common::{self, *};
use crate::fixtures::*;
use migrate_core::TransactionMode;
use migrate_core::runtime::{Migrator, RuntimeError, UpTo};

#[tokio::test]
async fn down_refuses_before_doing_anything_when_a_down_part_is_missing() {
    let db = database();
    let client = client(db.url()).await;
    let mut list = basic_set();
    list.push(common::migration(
        4,
        "irreversible",
        &["CREATE TABLE audit (id int)"],
        None,
        TransactionMode::Transactional,
    ));
    let migrations = set(list);
    let migrator = Migrator::new(&migrations, config()).expect("config");
    migrator.up(&client, UpTo::All).await.expect("up");
    let error = migrator.down(&client, 0).await.expect_err("4 has no down");
    assert!(matches!(error.error(), RuntimeError::NoDownPart { versions } if versions == &vec![4]));
    assert!(error.report.nothing_to_do());
    assert_eq!(history_versions(&client).await, vec![1, 2, 3, 4]);

    let partial = set(basic_set());
    let error = Migrator::new(&partial, config())
        .expect("config")
        .down(&client, 2)
        .await
        .expect_err("4 is unknown to this set");
    assert!(matches!(error.error(), RuntimeError::UnknownApplied { .. }));
}

#[tokio::test]
async fn down_reverts_newest_first_and_deletes_history_rows() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    let migrator = Migrator::new(&migrations, config()).expect("config");
    migrator.up(&client, UpTo::All).await.expect("up");
    let report = migrator.down(&client, 1).await.expect("down");
    assert_eq!(report.versions(), vec![3, 2]);
    assert_eq!(history_versions(&client).await, vec![1]);
    assert!(
        migrator
            .down(&client, 1)
            .await
            .expect("again")
            .nothing_to_do()
    );
}

fn dump_schema(db: &migrate_scratch::ScratchDatabase) -> String {
    let output = std::process::Command::new(cluster().binaries().program("pg_dump"))
        .args([
            "--schema-only",
            "--no-owner",
            "-h",
            db.host(),
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(db.port().to_string())
        .arg(db.name())
        .env("PGSSLMODE", "disable")
        .output()
        .expect("pg_dump");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // pg_dump 15.14+ brackets the dump with `\restrict <random key>` lines.
    String::from_utf8(output.stdout)
        .expect("utf8 dump")
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn schema_set() -> migrate_core::Migrations {
    set(vec![
        tx(
            1,
            "users",
            &[
                "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 email text NOT NULL)",
                "CREATE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                 BEGIN NEW.email := lower(NEW.email); RETURN NEW; END;\n$$",
                "CREATE TRIGGER users_touch BEFORE INSERT ON users \
                 FOR EACH ROW EXECUTE FUNCTION users_touch()",
            ],
            &[
                "DROP TRIGGER users_touch ON users",
                "DROP FUNCTION users_touch()",
                "DROP TABLE users",
            ],
        ),
        tx(
            2,
            "users_verified",
            &["ALTER TABLE users ADD COLUMN verified_at timestamptz"],
            &["ALTER TABLE users DROP COLUMN verified_at"],
        ),
        common::migration(
            3,
            "users_email_idx",
            &["CREATE UNIQUE INDEX CONCURRENTLY users_email_idx ON users (email)"],
            Some(&["DROP INDEX CONCURRENTLY IF EXISTS users_email_idx"]),
            TransactionMode::Autocommit,
        ),
        tx(
            4,
            "active_users",
            &[
                "CREATE VIEW active_users AS SELECT id, email FROM users WHERE verified_at IS NOT NULL",
            ],
            &["DROP VIEW active_users"],
        ),
    ])
}

#[tokio::test]
async fn up_down_up_gives_the_schema_of_a_single_up() {
    let migrations = schema_set();
    let once = database();
    let once_client = client(once.url()).await;
    Migrator::new(&migrations, config())
        .expect("config")
        .up(&once_client, UpTo::All)
        .await
        .expect("single up");

    let cycled = database();
    let cycled_client = client(cycled.url()).await;
    let migrator = Migrator::new(&migrations, config()).expect("config");
    migrator.up(&cycled_client, UpTo::All).await.expect("up");
    let down = migrator.down(&cycled_client, 0).await.expect("down");
    assert_eq!(down.versions(), vec![4, 3, 2, 1]);
    assert_eq!(
        scalar_i64(
            &cycled_client,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relname <> 'schema_migrations' \
               AND c.relname NOT LIKE 'schema_migrations_%'"
        )
        .await,
        0,
        "down to 0 left objects behind"
    );
    migrator
        .up(&cycled_client, UpTo::All)
        .await
        .expect("up again");

    let (a, b) = (dump_schema(&once), dump_schema(&cycled));
    assert!(a.contains("users_email_idx"), "{a}");
    assert_eq!(a, b);
}
