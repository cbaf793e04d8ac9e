//! The backfill: a `.backfill.sql` file's UPDATEs run as keyed batches, each its own short
//! transaction, paced so the application does not suffer, and checked afterwards.
//!
//! - `batches`: runs one backfill's statements batch by batch, storing progress after each;
//! - `pace`: what runs between two batches (the controller's decisions on the signals, or the
//!   directive's fixed `batch=`/`delay=`), always after the stop signals;
//! - `controller`: the decisions without I/O (batch size, rest, whether to run);
//! - `signals`: what the controller reads from PostgreSQL while batches run;
//! - `stops`: the reasons to pause or abort before a batch (operator's pause, replica lag, ...);
//! - `verify`: backfill status, and the check that no row still matches a statement's WHERE;
//! - `vacuum`: the table vacuumed by the backfill itself as it goes, before autovacuum would;
//! - `rerun`: running an applied backfill again (`migrate backfill rerun V`).

pub(crate) mod batches;
pub(crate) mod controller;
pub(crate) mod pace;
pub(crate) mod rerun;
pub(crate) mod signals;
pub(crate) mod stops;
pub(crate) mod vacuum;
pub mod verify;

pub(crate) use batches::{PaceContext, plan_statement, run};
