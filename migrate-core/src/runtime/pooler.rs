//! Refusing a connection pooler in transaction or statement mode before anything runs.
//!
//! Behind PgBouncer in `pool_mode = transaction` each transaction of a client may run on
//! another server connection, and several clients share one: a session advisory lock taken
//! by one runner stays on a server connection the next runner may get (advisory locks are
//! re-entrant per session, so it "takes" it again), and tokio-postgres's named prepared
//! statements collide between runners (`prepared statement "s1" already exists`, or worse, a
//! bind to another runner's statement). No lock can be made to survive that for autocommit
//! migrations (`CREATE INDEX CONCURRENTLY` cannot run in a transaction), so the runtime
//! refuses such a connection instead of running unprotected.
//!
//! The probe, with the simple query protocol only (no prepared statements, which a
//! transaction pooler breaks), and a second connection to the same address:
//!
//! 1. the migration connection A reads its `pg_backend_pid()`;
//! 2. a probe connection B opens a transaction (pinning a server connection to itself) and
//!    reads its pid;
//! 3. A reads its pid again.
//!
//! Directly, or through a session-mode pooler, A keeps one server process and B has another.
//! Through a transaction-mode pooler, B gets the server connection A just released (PgBouncer
//! reuses the most recently released one first, `server_round_robin = 0`), so B's pid equals
//! A's; or, when B got another one, A's next statement cannot use the one B pins and may land
//! elsewhere. Either sighting proves pooling; the probe runs three rounds, so a pool that
//! happens to hand A its old connection every time is still caught by B.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::connect::{ConnectOptions, open};
use super::error::ConnectError;

const ROUNDS: usize = 3;
/// How long the migration connection may take to answer while the probe holds a
/// transaction open: a direct server answers in milliseconds.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

async fn pid(client: &Client, sql: &str) -> Result<Option<i32>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).and_then(|pid| pid.parse().ok()),
        _ => None,
    }))
}

/// See the module docs. A probe connection that cannot be opened (e.g. no connection slot
/// left) skips the two-client part with a warning; the single-client part still runs.
pub(crate) async fn refuse_transaction_pooling(
    client: &Client,
    options: &ConnectOptions,
) -> Result<(), ConnectError> {
    let to_error = |error| ConnectError::Connect { error };
    let first = pid(client, "SELECT pg_backend_pid()")
        .await
        .map_err(to_error)?;
    let mut probe_options = options.clone();
    probe_options
        .config
        .application_name("migrate-pooler-probe");
    let probe = match open(&probe_options).await {
        Ok(probe) => Some(probe),
        Err(error) => {
            tracing::warn!(%error, "could not open the pooler probe connection; checking with one connection only");
            None
        }
    };
    for _ in 0..ROUNDS {
        let pinned = match &probe {
            Some(probe) => match pid(probe, "BEGIN; SELECT pg_backend_pid()").await {
                Ok(pinned) => pinned,
                // PgBouncer's statement mode refuses transaction blocks outright (08P01).
                Err(error) if error.code() == Some(&SqlState::PROTOCOL_VIOLATION) => {
                    return Err(ConnectError::TransactionPooler {
                        evidence: format!(
                            "a transaction block was refused: {}",
                            error
                                .as_db_error()
                                .map_or_else(|| error.to_string(), |db| db.message().to_owned())
                        ),
                    });
                }
                Err(error) => return Err(to_error(error)),
            },
            None => None,
        };
        if pinned.is_some() && pinned == first {
            return Err(ConnectError::TransactionPooler {
                evidence: format!(
                    "two client connections shared server process {}",
                    first.unwrap_or_default()
                ),
            });
        }
        // A direct connection answers at once; through a pool, A may wait for a server
        // connection while B pins one (a pool of one always does): that wait is evidence too.
        let again =
            tokio::time::timeout(ANSWER_WITHIN, pid(client, "SELECT pg_backend_pid()")).await;
        if let Some(probe) = &probe {
            probe.simple_query("ROLLBACK").await.map_err(to_error)?;
        }
        let evidence = match again {
            Err(_) if probe.is_some() => Some(format!(
                "the connection got no server process for {} s while another client held a \
                 transaction",
                ANSWER_WITHIN.as_secs()
            )),
            Err(_) => None,
            Ok(again) => {
                let again = again.map_err(to_error)?;
                (again != first).then(|| {
                    format!(
                        "one client connection moved from server process {} to {}",
                        first.unwrap_or_default(),
                        again.unwrap_or_default()
                    )
                })
            }
        };
        if let Some(evidence) = evidence {
            return Err(ConnectError::TransactionPooler { evidence });
        }
    }
    Ok(())
}
