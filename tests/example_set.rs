//! The example `migrations/` folder: a realistic, safe set that must lint clean.

use std::path::Path;

#[test]
fn example_set_is_clean_and_realistic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let checked = migrate_core::check_dir(&dir, "migrations").unwrap();
    let rendered: Vec<String> = checked
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(rendered.is_empty(), "{}", rendered.join("\n"));
    let statements: usize = checked
        .files
        .iter()
        .map(|f| {
            f.migration.up.statements.len()
                + f.migration.down.as_ref().map_or(0, |d| d.statements.len())
        })
        .sum();
    assert!(statements >= 40, "only {statements} statements");
    println!(
        "example set: {} files, {statements} statements",
        checked.files.len()
    );
    // The README states both figures; they cannot drift apart.
    assert_eq!(
        statements,
        readme_figure(" statements of everyday DDL"),
        "the README's statement count of the example set is stale"
    );
    assert_eq!(
        checked.files.len(),
        readme_figure(" files hold "),
        "the README's file count of the example set is stale"
    );
    let phases: Vec<_> = checked.files.iter().map(|f| f.migration.phase).collect();
    use migrate_core::Phase::*;
    assert!(phases.contains(&Expand) && phases.contains(&Backfill) && phases.contains(&Contract));
}

#[test]
fn embedded_set_matches_the_folder() {
    static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let from_disk = migrate_core::check_dir(&dir, "migrations")
        .unwrap()
        .migrations("");
    assert_eq!(MIGRATIONS.len(), from_disk.len());
    for (embedded, read) in MIGRATIONS.iter().zip(from_disk.iter()) {
        assert_eq!(embedded.checksum, read.checksum);
        assert_eq!(embedded.up, read.up);
        assert_eq!(embedded.down, read.down);
        assert_eq!(
            (embedded.version, embedded.phase, &embedded.requires),
            (read.version, read.phase, &read.requires)
        );
        assert_eq!(embedded.backfill, read.backfill);
    }
    let local = migrate_macros::migrations!("../migrations");
    assert_eq!(local.len(), MIGRATIONS.len());
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// The number the README writes right before `anchor` (which it must contain exactly once),
/// e.g. `62` in "62 statements of everyday DDL"; `1,000` reads as 1000.
fn readme_figure(anchor: &str) -> usize {
    let readme = readme();
    assert_eq!(
        readme.matches(anchor).count(),
        1,
        "README must contain {anchor:?} exactly once"
    );
    let before = &readme[..readme.find(anchor).unwrap()];
    let digits: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("README has no number before {anchor:?}"))
}

#[test]
fn readme_rule_catalogue_is_generated_from_the_rules() {
    let readme = readme();
    let start = readme
        .find("<!-- rules:start -->\n")
        .expect("README lacks <!-- rules:start -->")
        + "<!-- rules:start -->\n".len();
    let end = readme
        .find("<!-- rules:end -->")
        .expect("README lacks <!-- rules:end -->");
    let expected = migrate_core::lint::registry::catalogue_markdown();
    assert_eq!(
        &readme[start..end],
        expected,
        "the README's rule catalogue is stale; replace it with:\n{expected}"
    );
    assert_eq!(
        migrate_core::lint::RULES.len(),
        readme_figure(" rules is generated from"),
        "the README's rule count is stale"
    );
}
