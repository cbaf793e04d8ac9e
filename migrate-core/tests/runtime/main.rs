//! The runtime against a real PostgreSQL (a scratch cluster; one database per test), one module
//! per theme.

#[path = "../common/mod.rs"]
mod common;
mod fixtures;

mod apply;
mod autocommit;
mod down;
mod history;
mod locking;
mod session;
mod status;
mod timeouts;
