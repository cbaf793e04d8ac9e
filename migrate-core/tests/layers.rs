//! The modules of migrate-core are layers: a module uses only modules of lower layers, never
//! one above it nor a sibling of its own layer, so there is no cycle and a newcomer can read
//! the crate from the bottom up.
//!
//! The check reads every `crate::` path and every `super::` path that climbs to the crate
//! root, in the code of every file under `src/` (comments and string literals are skipped;
//! `#[cfg(test)]` modules count like any other code), and names each import that goes
//! sideways or up.
//!
//! Inside the runtime the same holds for its rooms and modules (`runtime/<name>.rs` or
//! `runtime/<name>/`), after [`RUNTIME_LAYERS`]: a file of the runtime uses only rooms below
//! its own (inside its own room it is free), read from `crate::runtime::` paths and from
//! `super::` paths that climb to the runtime's root.

use std::path::{Path, PathBuf};

/// Bottom first. A module may use the modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    // What everything is made of: checksums, diagnostics, work spread over the cores, then
    // the migration model.
    &["checksum", "diagnostic", "parallel"],
    &["migration"],
    // Reading SQL: the splitter (statements and tokens), the classifier (keywords), then one
    // statement with sqlparser, identifier folding, table keys and function volatility.
    &["splitter"],
    &["classify"],
    &["sql"],
    // Passes over the SQL, independent of each other: files and directives, the locks a
    // statement takes, the keyed-batch rewrite of a backfill UPDATE.
    &["source", "lock_analysis", "batch_plan", "queries"],
    // The lint engine and its rules; what the runtime needs from the statements.
    &["lint", "analysis"],
    // `check_dir`: read, parse and lint a folder (the macro's and the CLI's entry point).
    &["checked_set"],
    // The macro's cache between builds, keyed by what `check_dir` reads.
    &["build_cache"],
    // Applying a set to PostgreSQL.
    &["runtime"],
    // One set over many databases and tenant schemas, each through the runtime.
    &["fleet"],
];

/// The runtime's rooms and modules, bottom first, checked like [`LAYERS`]. `runtime/mod.rs`
/// is the runtime's root, above them all: it declares them, re-exports their public types and
/// runs the protocol (`up`, `down`) over them.
const RUNTIME_LAYERS: &[&[&str]] = &[
    // Independent of the rest: how values are written for people; what `check` observes.
    &["text", "observe"],
    // The errors, with the reasons they carry (gate refusals, backfill stops).
    &["error"],
    // The runtime's own tables; client-side bounds on waits; what the migrator reports.
    &["deadline", "report", "state"],
    // Settings, pure decisions and single probes, each on one connection.
    &[
        "config",
        "pending",
        "pooler",
        "replication",
        "rows_guard",
        "session",
    ],
    // Opening the connection; running one section of one migration.
    &["connect", "executor"],
    // The migration lock (it retries with the executor's backoff).
    &["lock"],
    // The rooms of the concepts: the backfill, the compare (with dual writes and reconcile),
    // adopting a database's history.
    &["adopt", "backfill", "compare"],
    // The contract gates: they read what the backfill and the compare left.
    &["gates"],
];

/// What a room may take from the runtime's root: the one type the rooms extend with their
/// commands (`impl Migrator { pub async fn verify .. }`). Anything else comes from the module
/// that defines it.
const RUNTIME_ROOT_ITEMS_ROOMS_EXTEND: &[&str] = &["Migrator"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn runtime_layer_of(module: &str) -> Option<usize> {
    RUNTIME_LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
}

#[test]
fn no_module_uses_a_module_of_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let relative = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if relative == "lib.rs" {
            continue; // the root declares the modules and re-exports from them
        }
        let code = std::fs::read_to_string(&file).expect("readable source file");
        problems.extend(violations(&relative, &code));
    }
    assert!(
        problems.is_empty(),
        "imports against the layer order (bottom first: {LAYERS:?}; in the runtime: \
         {RUNTIME_LAYERS:?}):\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_layer_names_a_module_that_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let exists = |dir: &Path, module: &str| {
        dir.join(format!("{module}.rs")).is_file() || dir.join(module).join("mod.rs").is_file()
    };
    for module in LAYERS.iter().copied().flatten() {
        assert!(
            exists(&src, module),
            "LAYERS names `{module}`, which is not a module of src/"
        );
    }
    for module in RUNTIME_LAYERS.iter().copied().flatten() {
        assert!(
            exists(&src.join("runtime"), module),
            "RUNTIME_LAYERS names `{module}`, which is not a module of src/runtime/"
        );
    }
}

/// The check itself: it must see imports in every form, and only in code.
#[test]
fn the_check_finds_upward_and_sideways_imports_and_nothing_else() {
    let found = |file: &str, code: &str| violations(file, code).len();
    assert_eq!(found("sql/names.rs", "use crate::lint::Rule;"), 1);
    assert_eq!(found("sql/names.rs", "use crate::{classify, lint};"), 1);
    assert_eq!(found("sql/names.rs", "let x = crate::lint::rule(id);"), 1);
    assert_eq!(found("lock_analysis.rs", "use crate::batch_plan::plan;"), 1);
    assert_eq!(found("lock_analysis.rs", "use super::lint::Rule;"), 1);
    assert_eq!(
        found(
            "lint/rules/x.rs",
            "use super::super::super::checked_set::check_dir;"
        ),
        1
    );
    assert_eq!(found("lint/mod.rs", "use crate::Checksum;"), 1);
    assert_eq!(found("new_thing.rs", "use crate::sql;"), 1);
    // Downward, inside the module, in tests, comments and strings: fine.
    let fine = "use crate::sql::{self, parse_statement};\n\
use super::context::StatementContext;\n\
// crate::checked_set is documented here\n\
/// [`crate::check_dir`]\n\
const S: &str = \"crate::runtime\";\n\
const Q: char = '\"';\n\
fn f<'a>(x: &'a str) -> &'a str { x }\n\
#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::Rule;\n}\n";
    assert_eq!(violations("lint/engine.rs", fine), Vec::<String>::new());
    let top_level_tests = "#[cfg(test)]\nmod tests {\n    use super::LockMode;\n}\n";
    assert_eq!(found("lock_analysis.rs", top_level_tests), 0);
}

/// Inside the runtime: a room below another cannot use it, in any form.
#[test]
fn the_check_finds_upward_and_sideways_imports_inside_the_runtime() {
    let found = |file: &str, code: &str| violations(file, code);
    // Up: the tables below the gates, the errors below the backfill.
    assert_eq!(
        found(
            "runtime/state/history.rs",
            "use crate::runtime::gates::GateFailure;"
        ),
        vec![
            "runtime/state/history.rs:1: `runtime::state` uses `gates`, a higher layer".to_owned()
        ]
    );
    assert_eq!(
        found(
            "runtime/error/mod.rs",
            "reason: Box<super::backfill::stops::AbortReason>,"
        )
        .len(),
        1
    );
    assert_eq!(
        found("runtime/error/gate.rs", "use super::super::gates::human;").len(),
        1
    );
    assert_eq!(
        found("runtime/connect.rs", "use super::{pooler, lock::lock_key};").len(),
        1
    );
    // Sideways: two rooms of one layer.
    assert_eq!(
        found(
            "runtime/backfill/pace.rs",
            "use crate::runtime::compare::run;"
        )
        .len(),
        1
    );
    // From the root, only the type the rooms extend.
    assert_eq!(
        found(
            "runtime/compare/run.rs",
            "use crate::runtime::RuntimeError;"
        )
        .len(),
        1
    );
    assert_eq!(
        found(
            "runtime/compare/run.rs",
            "use crate::runtime::{Migrator, sql_version};"
        )
        .len(),
        1
    );
    // A new module must be given a layer.
    assert_eq!(
        found("runtime/new_room/mod.rs", "use super::error::RuntimeError;").len(),
        1
    );
    // Down, inside the own room, from tests, and the root's `Migrator`: fine.
    let fine = "use super::batches::plan_statement;\n\
use crate::runtime::state::history::sql_version;\n\
use super::super::error::RuntimeError;\n\
use crate::runtime::Migrator;\n\
// crate::runtime::gates is documented here\n\
#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::pace::Pacer;\n}\n";
    assert_eq!(
        violations("runtime/backfill/verify.rs", fine),
        Vec::<String>::new()
    );
    assert_eq!(
        violations(
            "runtime/gates/mod.rs",
            "use super::backfill::plan_statement;"
        ),
        Vec::<String>::new()
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable src directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every import of `code` (the file `relative` under `src/`) that goes sideways or up: between
/// the crate's modules, and inside the runtime between its rooms.
fn violations(relative: &str, code: &str) -> Vec<String> {
    let module_path = module_path(relative);
    let own = &module_path[0];
    let Some(own_layer) = layer_of(own) else {
        return vec![format!(
            "{relative}: module `{own}` has no layer: add it to LAYERS in tests/layers.rs"
        )];
    };
    let imports = imported_modules(&module_path, &code_only(code));
    let mut problems = Vec::new();
    for (line, path) in &imports {
        let target = &path[0];
        if target == own {
            continue;
        }
        let problem = match layer_of(target) {
            None => format!(
                "uses `crate::{target}`, which is not a module (use the module that defines it)"
            ),
            Some(layer) if layer == own_layer => {
                format!("uses `{target}`, a module of its own layer")
            }
            Some(layer) if layer > own_layer => format!("uses `{target}`, a higher layer"),
            Some(_) => continue,
        };
        problems.push(format!("{relative}:{line}: `{own}` {problem}"));
    }
    if own == "runtime" && module_path.len() > 1 {
        problems.extend(runtime_violations(relative, &module_path[1], &imports));
    }
    problems
}

/// The imports of a file of the runtime's room (or module) `room` that go to a room of its own
/// layer or above, or to an item of the runtime's root other than the type rooms extend.
fn runtime_violations(relative: &str, room: &str, imports: &[(usize, Vec<String>)]) -> Vec<String> {
    let Some(own_layer) = runtime_layer_of(room) else {
        return vec![format!(
            "{relative}: runtime module `{room}` has no layer: add it to RUNTIME_LAYERS in \
             tests/layers.rs"
        )];
    };
    let mut problems = Vec::new();
    for (line, path) in imports {
        let [top, target, ..] = path.as_slice() else {
            continue;
        };
        if top != "runtime" || target == room || target.is_empty() {
            continue;
        }
        let problem = match runtime_layer_of(target) {
            None if RUNTIME_ROOT_ITEMS_ROOMS_EXTEND.contains(&target.as_str()) => continue,
            None => format!(
                "uses `runtime::{target}`, which is not a module of the runtime (use the \
                 module that defines it)"
            ),
            Some(layer) if layer == own_layer => {
                format!("uses `{target}`, a module of its own layer")
            }
            Some(layer) if layer > own_layer => format!("uses `{target}`, a higher layer"),
            Some(_) => continue,
        };
        problems.push(format!("{relative}:{line}: `runtime::{room}` {problem}"));
    }
    problems
}

/// `lint/rules/x.rs` → `[lint, rules, x]`; `lint/mod.rs` → `[lint]`.
fn module_path(relative: &str) -> Vec<String> {
    let without_extension = relative.strip_suffix(".rs").unwrap_or(relative);
    let mut parts: Vec<String> = without_extension.split('/').map(str::to_owned).collect();
    if parts.len() > 1 && parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// `code` with comments and the contents of string and character literals blanked out
/// (newlines kept, so lines still count).
fn code_only(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !is_ident_char(&chars, i)
        {
            // r"..." or r#"..."#
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let closing: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let rest: String = chars[j + 1..].iter().collect();
            let length = rest
                .find(&closing)
                .map_or(rest.len(), |end| end + closing.len());
            let literal_chars = rest[..length].chars().count();
            out.extend(chars[i..j + 1 + literal_chars].iter().map(|&c| blank(c)));
            i = j + 1 + literal_chars;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), or a lifetime ('a), which is code.
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&k| chars[k] == '\'' && k > i + 2)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident_char(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// The modules `code` (comments and literals blanked) refers to, with their line, as paths
/// from the crate root: the top-level module (`crate::m`, `crate::{m, n::x}`, and `super::`
/// chains that climb to the crate root), followed, for the runtime, by the runtime's room
/// (`crate::runtime::r`, `crate::runtime::{r, s::x}`, `super::` chains that climb to the
/// runtime's root). Inline modules (`mod tests { ... }`) are followed, so their `super::`
/// means the file's module.
fn imported_modules(file_module: &[String], code: &str) -> Vec<(usize, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    // Brace depths at which inline modules were opened.
    let mut inline_modules: Vec<usize> = Vec::new();
    let mut depth = 0;
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\n' => line += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if inline_modules.last() == Some(&depth) {
                    inline_modules.pop();
                }
            }
            _ => {}
        }
        if is_ident_char(&chars, i) {
            i += 1;
            continue;
        }
        let rest = || chars[i..].iter().collect::<String>();
        if starts_with(&chars, i, "mod ") {
            let after = rest();
            let declaration: String = after
                .chars()
                .take_while(|&c| c != ';' && c != '{')
                .collect();
            if after[declaration.len()..].starts_with('{') {
                inline_modules.push(depth);
            }
        } else if starts_with(&chars, i, "crate::") {
            let path_start = i + "crate::".len();
            for module in first_segments(&chars, path_start) {
                found.push((line, vec![module]));
            }
            if starts_with(&chars, path_start, "runtime::") {
                for room in first_segments(&chars, path_start + "runtime::".len()) {
                    found.push((line, vec!["runtime".to_owned(), room]));
                }
            }
            i = path_start;
            continue;
        } else if starts_with(&chars, i, "super::") {
            let mut position = i;
            let mut climbs = 0;
            while starts_with(&chars, position, "super::") {
                climbs += 1;
                position += "super::".len();
            }
            let mut here: Vec<String> = file_module.to_vec();
            here.extend((0..inline_modules.len()).map(|n| format!("inline module {n}")));
            // Only a climb to the crate root can leave the file's top-level module; the next
            // segment is then a top-level module. A climb to the runtime's root leaves the
            // file's room; the next segment is then a room.
            if climbs >= here.len() {
                for module in first_segments(&chars, position) {
                    found.push((line, vec![module]));
                }
            } else if here.len() - climbs == 1 && here[0] == "runtime" {
                for room in first_segments(&chars, position) {
                    found.push((line, vec!["runtime".to_owned(), room]));
                }
            }
            i = position;
            continue;
        }
        i += 1;
    }
    found
}

fn starts_with(chars: &[char], at: usize, text: &str) -> bool {
    let mut rest = chars.get(at..).unwrap_or_default().iter();
    text.chars().all(|expected| rest.next() == Some(&expected))
}

/// The first segment of the path at `at`, or of each path of a `{a, b::c}` group.
fn first_segments(chars: &[char], at: usize) -> Vec<String> {
    let ident = |from: usize| -> String {
        chars[from..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect()
    };
    if chars.get(at) != Some(&'{') {
        return vec![ident(at)];
    }
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut expecting = true;
    for (k, &c) in chars.iter().enumerate().skip(at) {
        match c {
            '{' => {
                depth += 1;
                expecting = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expecting = true,
            c if expecting && (c.is_alphanumeric() || c == '_') => {
                segments.push(ident(k));
                expecting = false;
            }
            _ => {}
        }
    }
    segments
}
