//! The service's own tests, each on a fresh database with its migrations applied
//! (`migrate_scratch::TestDatabase`, the README's "Testing with the migrations applied").

use migrate_scratch::TestDatabase;
use orders_service::{MIGRATIONS, migrator_config};

#[tokio::test]
async fn an_order_belongs_to_a_user() {
    let db = TestDatabase::migrated(&MIGRATIONS).await.unwrap();
    let user: i64 = db
        .client()
        .query_one(
            "INSERT INTO users (email) VALUES ('Ann@Example.com') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.client()
        .execute("INSERT INTO orders (user_id) VALUES ($1)", &[&user])
        .await
        .unwrap();
    let orphan = db
        .client()
        .execute("INSERT INTO orders (user_id) VALUES (-1)", &[])
        .await
        .expect_err("the foreign key holds");
    assert_eq!(
        orphan.code(),
        Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
    );
}

#[tokio::test]
async fn the_services_settings_hold_back_its_contract() {
    // An hour of stabilisation: on a fresh database the contract is refused, as it would be
    // right after the expand in production.
    let refused = TestDatabase::migrated_with(&MIGRATIONS, migrator_config())
        .await
        .expect_err("the contract waits an hour");
    let migrate_scratch::TestDatabaseError::Up(failed) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(failed.report.applied.len(), MIGRATIONS.len() - 1);
}
