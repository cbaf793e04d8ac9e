//! Reading a folder of migration files, one file per thing:
//!
//! - `folder`: the `.sql` files of a folder, as bytes ([`read_dir`]);
//! - `file_name`: the grammar `<version>_<name>[.<phase>].sql` ([`parse_file_name`]);
//! - `layout`: other tools' layouts (sqlx, golang-migrate, dbmate, refinery, Flyway, diesel):
//!   which one a folder uses ([`detect`]) and its migrations in our format ([`assemble`]);
//! - `directive`: the `-- migrate:` lines ([`Allow`] and the others);
//! - `compare_directive`: `-- migrate:compare` and `-- migrate:requires-compare` ([`parse_compare`]);
//! - `file`: one file split into up and down statements, and its migration ([`parse_file`]);
//! - `set`: the files together, and the checks across them ([`load_files`]).
//!
//! The macro and the runtime both go through [`crate::check_dir`], so a set embedded at build
//! time and a set read at run time are the same.

// Without the `lint` feature only the compare directive's reader is here: the runtime reads
// a set's stored `-- migrate:compare` text with it. The loader comes with the linter.
mod compare_directive;
mod directive;
#[cfg(feature = "lint")]
mod file;
#[cfg(feature = "lint")]
mod file_name;
#[cfg(feature = "lint")]
mod folder;
#[cfg(feature = "lint")]
mod layout;
#[cfg(feature = "lint")]
mod set;
#[cfg(test)]
pub(crate) mod testing;

pub use compare_directive::parse_compare;
#[cfg(feature = "lint")]
pub use directive::Allow;
#[cfg(feature = "lint")]
pub use file::{
    NEW_FILE_PLACEHOLDER, ParsedFile, SectionKind, StatementSource, parse_file, parse_source,
    relocate,
};
#[cfg(feature = "lint")]
pub use file_name::{is_sql_like, parse_file_name};
#[cfg(feature = "lint")]
pub use folder::{FolderContents, SourceFile, display_join, read_dir};
#[cfg(feature = "lint")]
pub use layout::{DownFile, Entries, Layout, MigrationSource, assemble, detect};
#[cfg(feature = "lint")]
pub use set::{LoadedSet, load_files, load_sources};
