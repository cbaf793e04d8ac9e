//! Fixtures shared by several themes: the three-migration set, the table a blocker locks.

use crate::common::*;

pub fn basic_set() -> Vec<migrate_core::Migration> {
    vec![
        tx(
            1,
            "users",
            &["CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)"],
            &["DROP TABLE users"],
        ),
        tx(
            2,
            "users_name",
            &[
                "ALTER TABLE users ADD COLUMN name text",
                "COMMENT ON COLUMN users.name IS 'display name; may be null'",
            ],
            &["ALTER TABLE users DROP COLUMN name"],
        ),
        tx(
            3,
            "orders",
            &["CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users)"],
            &["DROP TABLE orders"],
        ),
    ]
}

pub async fn lock_timeout_fixture() -> (
    migrate_scratch::ScratchDatabase,
    tokio_postgres::Client,
    migrate_core::Migrations,
) {
    let db = database();
    let setup = plain_client(db.url()).await;
    setup
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)",
        )
        .await
        .expect("table");
    let migrations = set(vec![tx(
        1,
        "t_note",
        &["ALTER TABLE t ADD COLUMN note text"],
        &["ALTER TABLE t DROP COLUMN note"],
    )]);
    (db, setup, migrations)
}
