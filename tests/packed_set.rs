//! `migrations!()` embeds a packed set (`migrate_core::migration::packed`): what it decodes
//! to at run time is exactly what `check_dir` reads from the same folder, every statement's
//! text, position and facts, the directives and what the runtime needs from the statements.

use std::path::Path;

use migrate_core::Migrations;

/// Written to be hard to pack: a byte-order mark, CRLF line endings, non-ASCII names,
/// dollar quotes and strings holding semicolons, two statements on a line, an autocommit
/// file, a backfill with a fixed pace and a compare, a contract that drops a column.
static PACKED: Migrations = migrate_macros::migrations!("packed");
static EXAMPLE: Migrations = migrate_macros::migrations!("../migrations");

fn read(relative: &str) -> Migrations {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let checked = migrate_core::check_dir(&dir, relative).unwrap();
    assert!(!checked.has_errors());
    checked.migrations("")
}

fn assert_same(embedded: &Migrations, relative: &str) {
    let read = read(relative);
    assert_eq!(embedded.len(), read.len(), "{relative}");
    for (embedded, read) in embedded.iter().zip(read.iter()) {
        // Statement by statement first, so a difference names the statement.
        let sections = [(&embedded.up, &read.up)]
            .into_iter()
            .chain(embedded.down.iter().zip(read.down.iter()));
        for (embedded_section, read_section) in sections {
            assert_eq!(
                embedded_section.statements.len(),
                read_section.statements.len()
            );
            for (e, r) in embedded_section
                .statements
                .iter()
                .zip(read_section.statements.iter())
            {
                assert_eq!(e, r, "{}:{}", read.file_name, r.line);
            }
        }
        assert_eq!(embedded, read, "{}", read.file_name);
    }
    assert_eq!(embedded.as_slice(), read.as_slice());
}

#[test]
fn the_example_set_embedded_is_what_check_dir_reads() {
    assert_same(&EXAMPLE, "../migrations");
    assert!(EXAMPLE.iter().any(|m| m.analysis.is_some()));
}

#[test]
fn a_hard_to_pack_set_embedded_is_what_check_dir_reads() {
    assert_same(&PACKED, "packed");
    let statements: Vec<&str> = PACKED.as_slice()[1]
        .up
        .statements
        .iter()
        .map(|s| s.sql.as_ref())
        .collect();
    assert_eq!(statements.len(), 3, "{statements:?}");
    assert!(PACKED.as_slice()[2].up.statements[0].non_transactional);
    let backfill = PACKED.as_slice()[3].backfill.as_ref().expect("a backfill");
    assert_eq!(
        backfill.pace,
        migrate_core::BackfillPace::Fixed {
            batch_size: 500,
            delay_ms: 10
        }
    );
    assert!(PACKED.as_slice()[4].requires_compare);
}

/// A set in a `let` is packed too, and equal to the static.
#[test]
fn a_local_set_equals_the_static_one() {
    let local = migrate_macros::migrations!("packed");
    assert_eq!(local, PACKED);
}
