//! One file, name and bytes, through the loader: a parsed migration or diagnostics naming the
//! file, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use migrate_core::lint::rule;
use migrate_core::source::{SourceFile, load_files, parse_file};

fuzz_target!(|input: (String, Vec<u8>)| {
    let (file_name, bytes) = input;
    let source = SourceFile {
        display_path: format!("fuzz/{file_name}"),
        file_name,
        bytes: bytes.into(),
    };
    let known_rules = |id: &str| rule(id).is_some();
    let _ = parse_file(&source, &known_rules);
    let set = load_files(std::slice::from_ref(&source), &known_rules);
    for diagnostic in &set.diagnostics {
        assert_eq!(diagnostic.file, source.display_path);
        assert!(!diagnostic.to_string().is_empty());
    }
});
