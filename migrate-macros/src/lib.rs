//! `migrations!("dir")`: embeds a folder of migration files in the binary and fails the build
//! on unsafe DDL.
//!
//! This crate is a doorway: reading, parsing and linting are `migrate_core::check_dir`, the
//! same function the `migrate` CLI runs, so `cargo build` and `migrate lint` always agree.
//! `expand` only turns its result into tokens, kept between builds by
//! `migrate_core::build_cache` (under the target directory, keyed by every input).
//!
//! Cargo rebuilds when an embedded file or `migrate.toml` changes (the expansion references
//! each with `include_bytes!`). A file added to or removed from the folder is not seen by
//! cargo on stable Rust: add a `build.rs` containing
//! `fn main() { println!("cargo:rerun-if-changed=migrations"); }`.

#![warn(missing_docs)]

mod expand;

use expand::Expanded;
use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// Embeds every migration of a folder (relative to the crate's `Cargo.toml`) as a
/// `migrate_core::Migrations` value, usable in a `static` or a `let`:
///
/// ```ignore
/// static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("migrations");
/// ```
///
/// Every file-level error and every lint finding of every file is a compile error naming
/// `file:line:col`, the rule, the danger and the safe rewrite; warn-level findings
/// (`migrate.toml`) are compiler warnings.
#[proc_macro]
pub fn migrations(input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    match expand::expand(input.clone(), true) {
        Ok(Expanded::Fresh(tokens)) => tokens.into(),
        Ok(Expanded::Cached { warnings, code }) => match code.parse::<TokenStream>() {
            // rustc's own lexer: proc-macro2 would parse megabytes unoptimised.
            Ok(code) => {
                let mut block = TokenStream::from(warnings);
                block.extend(code);
                TokenTree::Group(Group::new(Delimiter::Brace, block)).into()
            }
            // Entries are checked before use, so this is not expected; never fail for it.
            Err(_) => expand::expand(input, false)
                .and_then(Expanded::into_tokens)
                .unwrap_or_else(syn::Error::into_compile_error)
                .into(),
        },
        Err(error) => error.into_compile_error().into(),
    }
}
