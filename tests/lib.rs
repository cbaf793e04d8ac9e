//! Test-only crate; see ui.rs and example_set.rs.
