//! The splitter on any text: it returns or reports an unterminated construct, never panics
//! or hangs, and its tokens cover the input (only whitespace between them).

#![no_main]

use libfuzzer_sys::fuzz_target;
use migrate_core::splitter::{Item, split, tokenize};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tokens) = tokenize(source) else {
        return;
    };
    let mut end = if source.starts_with('\u{feff}') { 3 } else { 0 };
    for token in &tokens {
        assert!(token.range.start >= end && token.range.start < token.range.end);
        assert!(
            source[end..token.range.start]
                .bytes()
                .all(|b| b.is_ascii_whitespace())
        );
        end = token.range.end;
    }
    assert!(source[end..].bytes().all(|b| b.is_ascii_whitespace()));
    for item in split(source, &tokens) {
        if let Item::Statement(statement) = item {
            let first = &tokens[statement.tokens.start];
            let last = &tokens[statement.tokens.end - 1];
            assert_eq!(statement.range, first.range.start..last.range.end);
        }
    }
});
