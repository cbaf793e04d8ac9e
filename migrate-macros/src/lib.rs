//! `migrations!("dir")`.
