//! The packed form `migrations!()` embeds (`migration::packed`): decoding what
//! `CheckedSet::pack` wrote gives back exactly the migrations `check_dir` read, every text,
//! span and fact; a damaged blob is an error that says so, never a panic or a wrong set.

use std::path::{Path, PathBuf};

use migrate_core::migration::packed::{FORMAT, PackError, unpack};
use migrate_core::runtime::{Migrator, MigratorConfig, RuntimeError};
use migrate_core::{Migration, Migrations, check_dir, check_dir_as};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A folder packed as the macro packs it: the texts (files', then the pool) and the blob,
/// leaked to `'static` as the embedded ones are.
struct Packed {
    read: Vec<Migration>,
    texts: &'static [&'static str],
    blob: &'static [u8],
}

fn packed(dir: &Path, layout: Option<migrate_core::Layout>) -> Packed {
    let checked = check_dir_as(dir, "set", layout).expect("folder reads");
    let embedded = checked.pack(dir).expect("packs");
    let mut texts: Vec<&'static str> = embedded
        .files
        .into_iter()
        .map(|(_, text)| &*Box::leak(text.into_boxed_str()))
        .collect();
    texts.push(Box::leak(embedded.packed.pool.into_boxed_str()));
    Packed {
        read: checked.migrations("").as_slice().to_vec(),
        texts: Box::leak(texts.into_boxed_slice()),
        blob: Box::leak(embedded.packed.blob.into_boxed_slice()),
    }
}

fn assert_round_trip(dir: &Path, layout: Option<migrate_core::Layout>) {
    let set = packed(dir, layout);
    assert!(!set.read.is_empty(), "{} holds migrations", dir.display());
    let decoded = unpack(set.blob, set.texts).expect("decodes");
    // Field by field first, so a difference names the migration.
    assert_eq!(decoded.len(), set.read.len());
    for (decoded, read) in decoded.iter().zip(&set.read) {
        assert_eq!(decoded, read, "{}", read.file_name);
    }
    // The set as the runtime sees it.
    let embedded = Migrations::from_packed("", set.texts, set.blob);
    assert_eq!(embedded.try_as_slice(), Ok(set.read.as_slice()));
}

#[test]
fn the_example_set_decodes_to_what_check_dir_read() {
    assert_round_trip(&workspace().join("migrations"), None);
}

/// The corpus: long files, DO blocks, dollar quotes, statements sqlparser cannot read, purges
/// and contracts (its lint errors do not matter here: every file that parsed is packed).
#[test]
fn the_corpus_decodes_to_what_check_dir_read() {
    assert_round_trip(&workspace().join("tests/corpus"), None);
}

/// Layouts whose down part is a file of its own, and other tools' names.
#[test]
fn every_layout_fixture_decodes_to_what_check_dir_read() {
    let layouts = workspace().join("migrate-cli/tests/layouts");
    let mut seen = 0;
    for entry in std::fs::read_dir(&layouts).expect("layout fixtures") {
        let dir = entry.expect("entry").path();
        if dir.is_dir() {
            assert_round_trip(&dir, None);
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} layout fixtures");
}

/// Texts that are no slice of a file (or that a file holds only after line endings are
/// normalised) go to the pool: CRLF, a byte-order mark, non-ASCII names, a down file.
#[test]
fn crlf_a_bom_and_non_ascii_text_decode_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("0001_crlf.expand.sql"),
        "\u{feff}-- first\r\nCREATE TABLE IF NOT EXISTS \"café\" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\r\nCOMMENT ON TABLE \"café\" IS 'naïve ☕; not a split';\r\n-- migrate:down\r\nDROP TABLE IF EXISTS \"café\";\r\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("0002_index.expand.sql"),
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS cafe_idx ON \"café\" (id);\n",
    )
    .expect("write");
    assert_round_trip(dir.path(), None);
    let set = packed(dir.path(), None);
    let decoded = unpack(set.blob, set.texts).expect("decodes");
    assert!(decoded[1].up.statements[0].non_transactional);
    assert!(decoded[0].down.is_some());
}

/// The cost of the expansion follows the files: every statement of the example set is a
/// slice of its file's embedded text, not a copy in the pool.
#[test]
fn statements_are_slices_of_the_embedded_files() {
    let set = packed(&workspace().join("migrations"), None);
    let pool = set.texts.last().expect("the pool");
    for migration in &set.read {
        for statement in migration.up.statements.iter() {
            assert!(
                !pool.contains(statement.sql.as_ref()),
                "{}:{} is in the pool",
                migration.file_name,
                statement.line
            );
        }
    }
}

#[test]
fn a_damaged_blob_is_an_error_that_says_so() {
    let set = packed(&workspace().join("migrations"), None);
    let leak = |bytes: Vec<u8>| -> &'static [u8] { Box::leak(bytes.into_boxed_slice()) };

    // Cut anywhere: never a panic, never a shorter set.
    for len in 0..set.blob.len() {
        let error = unpack(&set.blob[..len], set.texts).expect_err("a cut blob is refused");
        assert!(
            matches!(
                error,
                PackError::Damaged { .. } | PackError::Format { found: 0 }
            ),
            "cut at {len}: {error:?}"
        );
    }
    // Any byte changed: decodes to an error or to some set, never panics.
    for at in 0..set.blob.len() {
        let mut bytes = set.blob.to_vec();
        bytes[at] ^= 0xff;
        let _ = unpack(leak(bytes), set.texts);
    }
    // Another format: the error names both.
    let mut other = set.blob.to_vec();
    other[3] = FORMAT + 1;
    let error = unpack(leak(other), set.texts).expect_err("another format");
    assert_eq!(error, PackError::Format { found: FORMAT + 1 });
    assert!(
        error.to_string().contains(&format!("format {FORMAT}")),
        "{error}"
    );
    // Texts that are not the ones packed with it: a text outside them is refused.
    let error = unpack(set.blob, &set.texts[..1]).expect_err("texts missing");
    assert!(
        matches!(error, PackError::Damaged { what, .. } if what.contains("text")),
        "{error:?}"
    );
    assert!(error.to_string().contains("damaged"), "{error}");
    // Trailing bytes.
    let mut longer = set.blob.to_vec();
    longer.push(0);
    assert!(matches!(
        unpack(leak(longer), set.texts),
        Err(PackError::Damaged { .. })
    ));
}

/// The runtime checks the set before anything else: a damaged embedded set is an error of
/// `Migrator::new`, not a panic later.
#[test]
fn the_runtime_refuses_a_damaged_embedded_set() {
    let set = packed(&workspace().join("migrations"), None);
    let cut: &'static [u8] = &set.blob[..set.blob.len() / 2];
    let damaged = Migrations::from_packed("", set.texts, cut);
    assert!(matches!(
        damaged.try_as_slice(),
        Err(PackError::Damaged { .. })
    ));
    let error = Migrator::new(&damaged, MigratorConfig::default()).expect_err("refused");
    assert!(
        matches!(error, RuntimeError::EmbeddedSet(PackError::Damaged { .. })),
        "{error}"
    );
    let whole = Migrations::from_packed("", set.texts, set.blob);
    assert!(Migrator::new(&whole, MigratorConfig::default()).is_ok());
}

#[test]
fn check_dir_and_the_packed_set_agree_on_the_example_set() {
    let dir = workspace().join("migrations");
    let from_disk = check_dir(&dir, "migrations").expect("reads").migrations("");
    let set = packed(&dir, None);
    assert_eq!(Migrations::from_packed("", set.texts, set.blob), from_disk);
}
