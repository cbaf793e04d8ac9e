//! The runtime's own tables, one module each, named after the history table: everything the
//! runtime remembers between runs. Gates, the executor, the backfill runner and the CLI read
//! and write them only through these types; no SQL on them lives elsewhere.
//!
//! | table | module | what it remembers |
//! | --- | --- | --- |
//! | `<history>` (default `public.schema_migrations`) | [`history`] | applied migrations, checksums |
//! | `<history>_backfill` | [`backfill_progress`] | each backfill statement's cursor, rows done, verification |
//! | `<history>_partial` | [`partial`] | how far an unfinished autocommit migration got |
//! | `<history>_flags` | [`flags`] | dual-write flags |
//! | `<history>_reconcile` | [`reconcile_queue`] | keys whose modern write failed, for `migrate reconcile` |
//! | `<history>_compare` | [`compare_progress`] | each compare's cursor, differences found, when it last passed |

pub mod backfill_progress;
pub mod compare_progress;
pub mod flags;
pub mod history;
pub mod partial;
pub mod reconcile_queue;
