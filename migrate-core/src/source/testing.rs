//! Fixtures of the source tests.

use super::{LoadedSet, SourceFile};

pub(crate) fn file(name: &str, body: &str) -> SourceFile {
    SourceFile {
        display_path: format!("migrations/{name}"),
        file_name: name.to_owned(),
        bytes: body.as_bytes().into(),
    }
}

pub(crate) fn any_rule(_: &str) -> bool {
    true
}

pub(crate) fn codes_of(set: &LoadedSet) -> Vec<&'static str> {
    set.diagnostics.iter().map(|d| d.code).collect()
}
