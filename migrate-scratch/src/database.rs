//! [`ScratchDatabase`], one database of a cluster.

/// A database of a [`ScratchCluster`]; dropping it does not drop the database (the whole
/// cluster goes away on its own drop).
///
/// [`ScratchCluster`]: crate::ScratchCluster
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) name: String,
}

impl ScratchDatabase {
    /// `postgres://postgres@127.0.0.1:PORT/NAME` (trust authentication, no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cluster's address (`127.0.0.1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The cluster's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database name (`scratch_<pid>_<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}
