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
//! transaction pooler breaks), and a second connection to the same address, repeated for
//! several rounds, each with a fresh random token:
//!
//! 1. the migration connection A sets a session setting `migrate.pooler_probe` to the token
//!    (`set_config(..., false)`: it lives as long as the server session);
//! 2. a probe connection B opens a transaction (pinning a server connection to itself) and
//!    reads that setting and its own pid;
//! 3. A reads the setting and its pid again.
//!
//! Directly, or through a session-mode pooler, A keeps one server session (its token and pid
//! stay) and B has another (it never sees A's token). Through a transaction-mode pooler,
//! either B lands on the server session A just used (PgBouncer reuses the most recently
//! released one first) and sees A's token, or A's next statement lands on another session
//! and misses its token; under concurrent load each round catches one or the other with high
//! probability, and a pool of one makes A wait while B pins it (also evidence). Statement mode
//! refuses B's transaction block outright. The transactional migrations are also guarded
//! inside their own transactions (see the executor): a pooler the probe missed still cannot
//! make one apply without the migration lock.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::error::ConnectError;

const ROUNDS: usize = 10;
/// How long the migration connection may take to answer while the probe holds a
/// transaction open: a direct server answers in milliseconds.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// See the module docs. `client` reaches `target`; `open_probe` opens the second connection
/// to the same address (the connector's, so this module needs nothing of it). A probe
/// connection that cannot be opened (e.g. no connection slot left) skips the two-client
/// part with a warning; the single-client part still runs.
pub(crate) async fn refuse_transaction_pooling(
    client: &Client,
    target: &str,
    open_probe: impl Future<Output = Result<Client, ConnectError>>,
) -> Result<(), ConnectError> {
    let to_error = |error| ConnectError::Connect {
        target: target.to_owned(),
        error,
    };
    let (_, first) = read(client, "SELECT NULL, pg_backend_pid()")
        .await
        .map_err(to_error)?;
    let probe = match open_probe.await {
        Ok(probe) => Some(probe),
        Err(error) => {
            tracing::warn!(%error, "could not open the pooler probe connection; checking with one connection only");
            None
        }
    };
    let refuse = |evidence: String| Err(ConnectError::TransactionPooler { evidence });
    for round in 0..ROUNDS {
        let token = token(round);
        // The token is generated here (hex digits), never user input.
        client
            .simple_query(&format!(
                "SELECT set_config('migrate.pooler_probe', '{token}', false)"
            ))
            .await
            .map_err(to_error)?;
        if let Some(probe) = &probe {
            let seen = match read(
                probe,
                "BEGIN; SELECT current_setting('migrate.pooler_probe', true), pg_backend_pid()",
            )
            .await
            {
                Ok(seen) => seen,
                // PgBouncer's statement mode refuses transaction blocks outright (08P01).
                Err(error) if error.code() == Some(&SqlState::PROTOCOL_VIOLATION) => {
                    return refuse(format!(
                        "a transaction block was refused: {}",
                        error
                            .as_db_error()
                            .map_or_else(|| error.to_string(), |db| db.message().to_owned())
                    ));
                }
                Err(error) => return Err(to_error(error)),
            };
            if seen.0.as_deref() == Some(token.as_str()) {
                let _ = probe.simple_query("ROLLBACK").await;
                return refuse(format!(
                    "another client connection saw this one's session (server process {})",
                    seen.1.unwrap_or_default()
                ));
            }
        }
        // A direct connection answers at once; through a pool, A may wait for a server
        // connection while B pins one (a pool of one always does): that wait is evidence too.
        let again = tokio::time::timeout(
            ANSWER_WITHIN,
            read(
                client,
                "SELECT current_setting('migrate.pooler_probe', true), pg_backend_pid()",
            ),
        )
        .await;
        if let Some(probe) = &probe {
            probe.simple_query("ROLLBACK").await.map_err(to_error)?;
        }
        match again {
            Err(_) if probe.is_some() => {
                return refuse(format!(
                    "the connection got no server process for {} s while another client held \
                     a transaction",
                    ANSWER_WITHIN.as_secs()
                ));
            }
            Err(_) => {}
            Ok(again) => {
                let (setting, pid) = again.map_err(to_error)?;
                if setting.as_deref() != Some(token.as_str()) || pid != first {
                    return refuse(format!(
                        "one client connection moved from server process {} to {}",
                        first.unwrap_or_default(),
                        pid.unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The first row's two columns, as text.
async fn read(
    client: &Client,
    sql: &str,
) -> Result<(Option<String>, Option<i32>), tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some((
                row.get(0).map(str::to_owned),
                row.get(1).and_then(|pid| pid.parse().ok()),
            )),
            _ => None,
        })
        .unwrap_or((None, None)))
}

/// A fresh hex token per round: random (std's per-instance seeded hasher), so two runners'
/// probes never mistake each other's tokens.
fn token(round: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(round);
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}
