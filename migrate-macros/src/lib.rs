//! `migrations!("dir")`: embeds a folder of migration files in the binary and fails the build
//! on unsafe DDL.
//!
//! This crate is a doorway: reading, parsing and linting are `migrate_core::check_dir`, the
//! same function the `migrate` CLI runs, so `cargo build` and `migrate lint` always agree.
//! `expand` only turns its result into tokens, kept between builds by
//! `migrate_core::build_cache` (under the target directory, keyed by every input).
//!
//! The expansion is packed: each file's text once (`include_str!`) and one byte string with
//! the statements' spans and facts, decoded at run time (`migrate_core::migration::packed`),
//! so rustc's work follows the number of files, not of statements.
//!
//! Cargo rebuilds when an embedded file or `migrate.toml` changes (the expansion references
//! the files with `include_str!`, `migrate.toml` with `include_bytes!`). A file added to or
//! removed from the folder is not seen by cargo on stable Rust: add a `build.rs` (see
//! [`migrations!`]).

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
///
/// # Other tools' folders: `layout = "..."`
///
/// A folder written for another tool is read as it is. The layout is detected from the file
/// names, or taken from `layout = "<name>"` in the folder's `migrate.toml`, or forced here:
///
/// ```ignore
/// static MIGRATIONS: migrate_core::Migrations =
///     migrate_macros::migrations!("migrations", layout = "sqlx");
/// ```
///
/// | layout | a migration is |
/// | --- | --- |
/// | `migrate` | `<version>_<name>[.<phase>].sql`, phase `expand` (default), `backfill` or `contract` |
/// | `sqlx` | `<version>_<description>.sql`, or `.up.sql` + `.down.sql` |
/// | `golang-migrate` | `<version>_<title>.up.sql` + `.down.sql` |
/// | `dbmate` | `<version>_<name>.sql` with `-- migrate:up` / `-- migrate:down` |
/// | `refinery` | `V<version>__<name>.sql` |
/// | `flyway` | `V<version>__<description>.sql`, its undo `U<version>__<description>.sql` as the down part |
/// | `diesel` | a folder `<version>_<name>/` holding `up.sql` and `down.sql` |
///
/// An unknown name is a compile error listing the known ones. What the other tool does and
/// migrate cannot honour (Flyway's repeatable `R__` files, `${...}` placeholders, ...) is an
/// error naming the file, never silently skipped.
///
/// # A file added to the folder: `build.rs`
///
/// The expansion refers to every file it read (`include_str!`), so cargo rebuilds when one
/// of them, or `migrate.toml`, changes. A file *added* to the folder (or removed from it) is
/// not seen by cargo on stable Rust: the build goes on embedding the old set until something
/// else changes. Tell cargo to watch the folder with a `build.rs` beside `Cargo.toml`:
///
/// ```ignore
/// // build.rs: rebuild when a migration is added to or removed from the folder.
/// fn main() {
///     println!("cargo:rerun-if-changed=migrations");
/// }
/// ```
///
/// # Accepting a finding: `-- migrate:allow`
///
/// Where a rule's danger does not apply (a table created empty in an earlier migration of the
/// same release, say), the line before the statement accepts it for that statement only:
///
/// ```sql
/// -- migrate:allow require-concurrent-index the table is created in 0001 and still empty
/// CREATE INDEX IF NOT EXISTS users_email_idx ON users (email);
/// ```
///
/// The form is `-- migrate:allow <rule-id> <reason>`, on a line of its own between
/// statements. The reason is required; an unknown rule id, and an allow that suppresses
/// nothing (a stale one would hide the next real problem), are errors. `migrate explain
/// <rule-id>` prints what a rule checks and the safe rewrite.
///
/// # What the service links
///
/// The macro reads every statement at build time and stores in the set what applying it
/// needs (a backfill's batch pieces, what a contract removes, the tables its statements
/// lock), so a service that only applies can depend on `migrate-core` with
/// `default-features = false, features = ["runtime"]`: no SQL parser in its binary.
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
