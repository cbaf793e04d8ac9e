//! Running a rule's examples as its tests.

use super::rule::example_files;
use super::{Config, Rule, lint_files, rule};
use crate::diagnostic::{Diagnostic, codes};
use crate::source::{SourceFile, load_files};

/// Lints one example file with every rule at its default level.
pub fn lint_example(file_name: &str, sql: &str) -> Vec<Diagnostic> {
    let sources: Vec<SourceFile> = example_files(file_name, sql)
        .into_iter()
        .map(|(name, content)| SourceFile {
            display_path: name.clone(),
            file_name: name,
            bytes: content.into_bytes().into(),
        })
        .collect();
    let set = load_files(&sources, &|id| rule(id).is_some());
    // An example is one file: a contract's `requires` cannot name an expand of the set.
    let mut diagnostics: Vec<Diagnostic> = set
        .diagnostics
        .iter()
        .filter(|d| d.code != codes::BAD_REQUIRES)
        .cloned()
        .collect();
    diagnostics.extend(lint_files(&set.files, &Config::default()));
    diagnostics
}

/// Runs a rule's own examples: each bad one triggers it, each good one is fully clean.
pub fn check_examples(rule: &Rule) {
    assert!(!rule.bad.is_empty(), "{} has no bad example", rule.id);
    assert!(!rule.good.is_empty(), "{} has no good example", rule.id);
    for example in rule.bad {
        let diagnostics = lint_example(example.file_name, example.sql);
        assert!(
            diagnostics.iter().any(|d| d.code == rule.id),
            "{}: bad example not caught:\n{}\nfound: {diagnostics:#?}",
            rule.id,
            example.sql
        );
    }
    for example in rule.good {
        let diagnostics = lint_example(example.file_name, example.sql);
        assert!(
            diagnostics.is_empty(),
            "{}: good example has findings:\n{}\nfound: {diagnostics:#?}",
            rule.id,
            example.sql
        );
    }
}
