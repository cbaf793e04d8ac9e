//! The set the dual-write tests share (over tokio-postgres and over sqlx): users(id, email,
//! email_normalized), whose backfill declares the compare (and so the reconcile mapping)
//! `email_normalized = lower(email)`, and the application's two writes.

use std::path::Path;

use migrate_core::Migrations;
use migrate_core::runtime::{Migrator, UpTo};
use tokio_postgres::Client;

use super::{client, config};

/// users(id, email, email_normalized), and a backfill declaring the compare (and so the
/// reconcile mapping) `email_normalized = lower(email)`.
pub fn one_table_set(dir: &Path) -> Migrations {
    std::fs::write(
        dir.join("0001_users.sql"),
        "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, email_normalized text);\n\
         -- migrate:down\nDROP TABLE IF EXISTS users;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_normalize.backfill.sql"),
        "-- migrate:backfill table=users key=id\n\
         -- migrate:compare source=users target=users key=id columns=email_normalized map=lower(email)\n\
         UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;\n-- migrate:down\n",
    )
    .unwrap();
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

/// The modern write fails for every id divisible by 3: a trigger that fires only when the
/// UPDATE names `email_normalized` (the legacy write never does).
pub const FAIL_EVERY_THIRD: &str = "CREATE FUNCTION refuse_modern() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN RAISE EXCEPTION 'modern side down for %', NEW.id; END $$; \
     CREATE TRIGGER refuse_modern BEFORE UPDATE OF email_normalized ON users \
     FOR EACH ROW WHEN (NEW.id % 3 = 0) EXECUTE FUNCTION refuse_modern();";

pub const LEGACY: &str = "UPDATE users SET email = $2 WHERE id = $1";
pub const MODERN: &str = "UPDATE users SET email_normalized = lower($2) WHERE id = $1";

/// A fresh folder with the set, applied on `url`, and `rows` users whose two shapes agree.
pub async fn setup(url: &str, rows: i64) -> (Migrations, tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let migrations = one_table_set(dir.path());
    let client = client(url).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO users (id, email, email_normalized) \
             SELECT g, 'U' || g || '@X', lower('U' || g || '@X') FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    (migrations, dir, client)
}
