//! Client-side bounds on every wait for the server.
//!
//! `statement_timeout` and `lock_timeout` are enforced by the server: a server that stopped
//! answering (a hung host, a stalled pooler, a stopped process, a network path that drops
//! packets while the kernel still acknowledges them) never sends the cancellation. So each
//! wait of the runtime also has a bound of its own, on the client; when it passes, the
//! operation fails with [`RuntimeError::NoAnswer`] and the connection must be abandoned (a
//! request may still be in flight on it).

use std::future::Future;
use std::time::Duration;

use super::error::RuntimeError;

/// Waits for `future` at most `limit` (`None`: no bound).
pub(crate) async fn within<F: Future>(
    limit: Option<Duration>,
    what: &'static str,
    future: F,
) -> Result<F::Output, RuntimeError> {
    match limit {
        None => Ok(future.await),
        Some(limit) => {
            tokio::time::timeout(limit, future)
                .await
                .map_err(|_| RuntimeError::NoAnswer {
                    what,
                    waited: limit,
                })
        }
    }
}

/// The bounds of one run, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A query of the runtime's own (history, lock, catalog): it may queue behind a table
    /// lock for `lock_timeout`, then the server answers within the network allowance.
    pub own: Duration,
    /// One migration statement, batch or count: `statement_timeout` plus the allowance;
    /// `None` when `statement_timeout` is disabled (0).
    pub statement: Option<Duration>,
}

impl Limits {
    pub(crate) fn new(
        lock_timeout: Duration,
        statement_timeout: Duration,
        network_timeout: Duration,
    ) -> Limits {
        Limits {
            own: lock_timeout + network_timeout,
            statement: (!statement_timeout.is_zero()).then(|| statement_timeout + network_timeout),
        }
    }

    /// `statements` migration statements sent together (a transactional pipeline): the
    /// server bounds each one by `statement_timeout`.
    pub(crate) fn statements(&self, statements: usize) -> Option<Duration> {
        let count = u32::try_from(statements.max(1)).unwrap_or(u32::MAX);
        self.statement
            .map(|one| one.saturating_mul(count).saturating_add(self.own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_timeouts() {
        let limits = Limits::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(30),
        );
        assert_eq!(limits.own, Duration::from_secs(35));
        assert_eq!(limits.statement, Some(Duration::from_secs(90)));
        assert_eq!(limits.statements(3), Some(Duration::from_secs(305)));
        let disabled = Limits::new(
            Duration::from_secs(5),
            Duration::ZERO,
            Duration::from_secs(30),
        );
        assert_eq!(disabled.statement, None);
        assert_eq!(disabled.statements(3), None);
    }

    #[tokio::test]
    async fn a_future_that_never_ends_is_cut_off() {
        let error = within(
            Some(Duration::from_millis(10)),
            "waiting for nothing",
            std::future::pending::<()>(),
        )
        .await
        .expect_err("bounded");
        assert!(error.to_string().contains("waiting for nothing"), "{error}");
    }
}
