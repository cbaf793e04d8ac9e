//! Adopting what a database already has, by writing history rows instead of running SQL:
//! another tool's history (`import`), a schema built by other means (`baseline`), an edit
//! to an applied migration known to be harmless (`repair`).

pub mod baseline;
// `migrate import`: the CLI's, and it reads SQL.
#[cfg(feature = "lint")]
pub mod import;
pub mod repair;
