//! Backfill directive names are embedded exactly as PostgreSQL will look them up.

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/pass/backfill_names");

fn main() {
    let spec = |version: u64| MIGRATIONS.get(version).unwrap().backfill.clone().unwrap();
    let quoted = spec(1);
    assert_eq!(quoted.schema.as_deref(), Some("App"));
    assert_eq!((quoted.table.as_ref(), quoted.key.as_ref()), ("Orders", "id"));
    assert_eq!(
        quoted.pace,
        migrate_core::BackfillPace::Fixed { batch_size: 10, delay_ms: 0 }
    );
    let folded = spec(2);
    assert_eq!(folded.schema, None);
    assert_eq!((folded.table.as_ref(), folded.key.as_ref()), ("items", "id"));
}
