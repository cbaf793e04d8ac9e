//! A small corpus of real-looking migrations (`corpus/`), written for this project, covering
//! the linter's hard cases: ALTER TABLEs sqlparser cannot parse whole (every action still
//! read), PostgreSQL 16-18 forms, referential actions, new tables filled in the same part,
//! type changes that do or do not rewrite, bounded and unbounded data changes, purges, DO
//! blocks. Its findings are checked in (`corpus/expected_findings.txt`, one `file:line rule`
//! per finding), so any change of the linter's behaviour shows in review; regenerate with
//! `UPDATE_CORPUS=1 cargo test -p migrate-tests --test corpus` and read the diff.

use std::path::Path;

#[test]
fn corpus_findings_match_the_checked_in_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let checked = migrate_core::check_dir(&dir, "corpus").unwrap();
    let mut findings: Vec<(&str, u32, &str)> = checked
        .diagnostics
        .iter()
        .map(|d| (d.file.as_str(), d.line, d.code))
        .collect();
    findings.sort();
    let found = findings
        .iter()
        .map(|(file, line, code)| format!("{file}:{line} {code}\n"))
        .collect::<String>();
    let snapshot = dir.join("expected_findings.txt");
    if std::env::var_os("UPDATE_CORPUS").is_some() {
        std::fs::write(&snapshot, &found).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert_eq!(
        found,
        expected,
        "the corpus's findings changed; if intended, rerun with UPDATE_CORPUS=1 and review the diff of {}",
        snapshot.display()
    );
}
