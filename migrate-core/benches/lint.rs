//! Parse and lint throughput: 1,000 generated migration files of everyday DDL, read from a
//! folder through `check_dir`, exactly as the macro and the CLI do.
//!
//! `cargo bench -p migrate-core --bench lint` prints time per 1,000 files and MB/s; files/s
//! is 1,000 divided by the time.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// One realistic expand migration (about 10 statements, about 1.3 KB).
pub fn migration_body(index: usize) -> String {
    format!(
        "-- migrate:up\n\
CREATE TABLE IF NOT EXISTS table_{index} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    owner_id bigint NOT NULL,\n    name text NOT NULL,\n    created_at timestamptz NOT NULL DEFAULT now()\n);\n\
CREATE INDEX IF NOT EXISTS table_{index}_owner_idx ON table_{index} (owner_id);\n\
ALTER TABLE table_{index} ADD COLUMN IF NOT EXISTS note text;\n\
ALTER TABLE table_{index} ADD CONSTRAINT table_{index}_name_len CHECK (length(name) < 200) NOT VALID;\n\
CREATE OR REPLACE FUNCTION table_{index}_touch() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n    NEW.created_at := now();\n    RETURN NEW;\nEND\n$$;\n\
CREATE OR REPLACE VIEW table_{index}_names AS SELECT id, name FROM table_{index};\n\
COMMENT ON TABLE table_{index} IS 'generated table {index}; it''s for benchmarks';\n\
GRANT SELECT ON table_{index}_names TO PUBLIC;\n\
-- migrate:down\n\
DROP VIEW IF EXISTS table_{index}_names;\n\
DROP FUNCTION IF EXISTS table_{index}_touch();\n\
DROP TABLE IF EXISTS table_{index};\n"
    )
}

fn write_set(dir: &Path, count: usize) -> u64 {
    let mut bytes = 0;
    for index in 1..=count {
        let body = migration_body(index);
        bytes += body.len() as u64;
        std::fs::write(
            dir.join(format!("{index:05}_table_{index}.expand.sql")),
            body,
        )
        .unwrap();
    }
    bytes
}

fn bench_check_dir(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_set(dir.path(), 1000);
    let checked = migrate_core::check_dir(dir.path(), "migrations").unwrap();
    assert!(
        checked.diagnostics.is_empty(),
        "{:?}",
        checked.diagnostics.first()
    );
    assert_eq!(checked.files.len(), 1000);

    let mut group = c.benchmark_group("check_dir");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("1000 files", |b| {
        b.iter(|| migrate_core::check_dir(dir.path(), "migrations").unwrap())
    });
    group.finish();
    println!(
        "input: 1000 files, {bytes} bytes ({:.2} MB)",
        bytes as f64 / 1e6
    );
}

criterion_group!(benches, bench_check_dir);
criterion_main!(benches);
