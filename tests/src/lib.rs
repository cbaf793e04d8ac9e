//! Test-only crate: trybuild UI tests and integration tests live in tests/.
