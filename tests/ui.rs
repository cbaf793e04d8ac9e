//! trybuild UI tests of `migrations!()`: a compile-fail case per rule and per file-level
//! error, each with a `.stderr` snapshot, and compile-pass cases.
//!
//! Rule fixtures (`ui/rules/<rule-id>/`) are the rule's own bad examples, written by
//! `UPDATE_FIXTURES=1 cargo test -p migrate-tests --test ui`; `fixtures_are_the_rule_examples`
//! fails when they drift from the rule declarations.

use std::path::Path;

use migrate_core::lint::RULES;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn ui() {
    // trybuild compiles the cases from a copy of this crate under target/; point the macro
    // back at this directory so fixture paths resolve.
    // SAFETY: set before trybuild spawns anything; no other thread reads the environment here.
    unsafe { std::env::set_var("MIGRATE_MACROS_MANIFEST_DIR", manifest_dir()) };
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/rules/*.rs");
    cases.compile_fail("ui/files/*.rs");
    cases.pass("ui/pass/*.rs");
}

#[test]
fn fixtures_are_the_rule_examples() {
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    for rule in RULES {
        let dir = manifest_dir().join("ui/rules").join(rule.id);
        let case = manifest_dir()
            .join("ui/rules")
            .join(format!("{}.rs", rule.id.replace('-', "_")));
        // A warn-level rule fails the build only when its warnings are denied.
        let deny = if rule.default_level == migrate_core::lint::Level::Warn {
            "#![deny(deprecated)]\n\n"
        } else {
            ""
        };
        let source = format!(
            "{deny}static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!(\"ui/rules/{}\");\n\nfn main() {{\n    let _ = &MIGRATIONS;\n}}\n",
            rule.id
        );
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for example in rule.bad {
                for (name, content) in example.files() {
                    std::fs::write(dir.join(name), content).unwrap();
                }
            }
            for (file_name, sql) in required_expand_stubs(rule) {
                std::fs::write(dir.join(file_name), sql).unwrap();
            }
            std::fs::write(&case, &source).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&case).ok().as_deref(),
            Some(source.as_str()),
            "{} is stale: run with UPDATE_FIXTURES=1",
            case.display()
        );
        for (file_name, sql) in required_expand_stubs(rule) {
            assert_eq!(
                std::fs::read_to_string(dir.join(&file_name)).ok(),
                Some(sql),
                "{file_name} is stale: run with UPDATE_FIXTURES=1"
            );
        }
        for (name, content) in rule.bad.iter().flat_map(|example| example.files()) {
            let path = dir.join(name);
            assert_eq!(
                std::fs::read_to_string(&path).ok().as_deref(),
                Some(content.as_str()),
                "{} is stale: run with UPDATE_FIXTURES=1",
                path.display()
            );
        }
    }
}

/// A contract example names the expand it finishes; in a fixture folder that expand must
/// exist, or the snapshot would show `bad-requires` instead of the rule.
fn required_expand_stubs(rule: &migrate_core::lint::Rule) -> Vec<(String, String)> {
    let mut stubs = Vec::new();
    for example in rule.bad {
        let Some(rest) = example.sql.split("-- migrate:requires ").nth(1) else {
            continue;
        };
        let version: u64 = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Any file of the examples, `-- file:` ones included, may be that expand.
        let exists = rule.bad.iter().flat_map(|e| e.files()).any(|(name, _)| {
            name.split('_').next().and_then(|v| v.parse::<u64>().ok()) == Some(version)
        });
        if !exists {
            let stub = (
                format!("{version:04}_expand.expand.sql"),
                "-- the expand the contract examples finish\nSELECT 1;\n".to_owned(),
            );
            if !stubs.contains(&stub) {
                stubs.push(stub);
            }
        }
    }
    stubs
}
