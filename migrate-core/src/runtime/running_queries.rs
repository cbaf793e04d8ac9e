//! The contract gate that watches the old release (docs/design.md, "Contract gates"): before a
//! contract, two readings of `pg_stat_statements` a window apart; a statement called in
//! between that names what the contract drops, renames or retypes refuses the contract.
//!
//! Nothing of the contract is tried on production to find out: what it removes is read from
//! its statements ([`crate::queries::removed_by`]), and what a query uses from its text
//! ([`crate::queries::RemovedObject::used_by`], conservative). Both readings only read.

use std::time::Duration;

use tokio_postgres::Client;

use super::error::RuntimeError;
use super::gates::GateFailure;
use crate::migration::Migration;
use crate::queries::{self, QuerySourceError};

/// `None`: the contract may run as far as this gate goes.
pub(crate) async fn check(
    client: &Client,
    contract: &Migration,
    window: Duration,
) -> Result<Option<GateFailure>, RuntimeError> {
    let removed = queries::removed_by(contract);
    let read = |client| async move {
        match queries::read_calls(client).await {
            Ok(calls) => Ok(Ok(calls)),
            Err(QuerySourceError::Database { source }) => Err(RuntimeError::Database {
                action: "reading pg_stat_statements for the running-queries gate",
                error: source,
            }),
            Err(other) => Ok(Err(GateFailure::RunningQueriesUnknown {
                reason: other.to_string(),
            })),
        }
    };
    // Read even when the contract removes nothing we can name: a missing pg_stat_statements
    // must refuse every contract alike, not only the ones this reading understands.
    let before = match read(client).await? {
        Ok(calls) => calls,
        Err(failure) => return Ok(Some(failure)),
    };
    tokio::time::sleep(window).await;
    let after = match read(client).await? {
        Ok(calls) => calls,
        Err(failure) => return Ok(Some(failure)),
    };
    for called in queries::called_between(&before, &after) {
        if let Some(object) = removed.iter().find(|object| object.used_by(&called.text)) {
            return Ok(Some(GateFailure::RunningQueryBreaks {
                query: called.to_query().shortened(),
                queryid: called.queryid,
                calls: called.calls,
                window,
                object: object.to_string(),
            }));
        }
    }
    Ok(None)
}
