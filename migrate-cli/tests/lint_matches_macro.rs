//! `migrate lint` reports exactly what `migrations!()` reports at build time: for every
//! compile-fail fixture of the workspace's trybuild UI tests, the diagnostics' first lines in
//! the `.stderr` snapshot equal the first lines `migrate lint` prints for the same folder,
//! shown with the same path (run from the `tests/` crate, DIR = `ui/<kind>/<case>`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

/// Fixtures whose macro input is not a readable folder of SQL.
const WITHOUT_SQL: &[(&str, &str)] = &[
    (
        "missing_folder",
        "the macro names a folder that does not exist",
    ),
    ("not_a_literal", "the macro input is not a string literal"),
    (
        "format_skew",
        "the expansion's check of the packed format, no folder",
    ),
];

/// The folder named in `migrations!("...")` of a case file.
fn macro_folder(case_source: &str) -> Option<String> {
    let start = case_source.find("migrations!(\"")? + "migrations!(\"".len();
    let end = case_source[start..].find('"')? + start;
    Some(case_source[start..end].to_owned())
}

/// First lines of the diagnostics in a trybuild snapshot: `error: <first line>`; a
/// warn-level finding is a `warning:` (or, denied, an `error:`) wrapped in rustc's deprecation
/// text, so the diagnostic is the part from the folder path on.
fn snapshot_first_lines(stderr: &str, folder: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|line| {
            line.strip_prefix("error: ")
                .or_else(|| line.strip_prefix("warning: "))
        })
        .filter_map(|line| {
            line.find(&format!("{folder}/"))
                .map(|at| line[at..].to_owned())
        })
        .collect()
}

#[test]
fn lint_reports_what_the_macro_reports_on_every_ui_fixture() {
    let tests_crate = workspace().join("tests");
    let mut compared = 0;
    let mut skipped = Vec::new();
    for kind in ["ui/rules", "ui/files"] {
        let mut cases: Vec<_> = std::fs::read_dir(tests_crate.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        cases.sort();
        for case in cases {
            let stem = case.file_stem().unwrap().to_string_lossy().into_owned();
            if let Some((_, reason)) = WITHOUT_SQL.iter().find(|(name, _)| *name == stem) {
                skipped.push(format!("{kind}/{stem}: {reason}"));
                continue;
            }
            let source = std::fs::read_to_string(&case).unwrap();
            let folder = macro_folder(&source)
                .unwrap_or_else(|| panic!("{}: no migrations!(\"...\")", case.display()));
            assert!(
                tests_crate.join(&folder).is_dir(),
                "{}: folder {folder} missing",
                case.display()
            );
            let snapshot = std::fs::read_to_string(case.with_extension("stderr"))
                .unwrap_or_else(|_| panic!("{}: no .stderr snapshot", case.display()));
            let expected = snapshot_first_lines(&snapshot, &folder);
            assert!(
                !expected.is_empty(),
                "{}: snapshot has no diagnostic",
                case.display()
            );

            let output = migrate()
                .current_dir(&tests_crate)
                .args(["lint", &folder])
                .output()
                .unwrap();
            let printed: BTreeSet<String> = stdout(&output)
                .lines()
                .filter(|line| line.starts_with(&format!("{folder}/")))
                .map(str::to_owned)
                .collect();
            assert_eq!(
                printed,
                expected,
                "{}: `migrate lint {folder}` and the macro disagree\nlint stdout:\n{}",
                case.display(),
                stdout(&output)
            );
            // Only an error fails the build; a warning denied by #![deny] is an error there
            // but not for `lint`.
            let has_errors = expected.iter().any(|l| l.contains(": error["));
            assert_eq!(
                output.status.code(),
                Some(if has_errors { 3 } else { 0 }),
                "{}",
                case.display()
            );
            compared += 1;
        }
    }
    eprintln!("compared {compared} fixtures; skipped: {skipped:#?}");
    assert_eq!(skipped.len(), WITHOUT_SQL.len(), "{skipped:?}");
    assert!(compared >= 20, "only {compared} fixtures compared");
    assert!(Path::new(&tests_crate).join("ui/pass").is_dir());
}
