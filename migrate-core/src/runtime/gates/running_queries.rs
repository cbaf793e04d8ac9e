//! The contract gate that watches the old release (see [`crate::runtime::gates`]): before a
//! contract, two readings of `pg_stat_statements` a window apart; a statement called in
//! between that names what the contract drops, renames or retypes refuses the contract.
//!
//! Nothing of the contract is tried on production to find out: what it removes was read from
//! its statements when the set was checked ([`crate::StatementAnalysis::removes`]), with the
//! views the catalog says depend on what it drops (`pg_depend`: `CASCADE` drops them too),
//! and what a query uses from its text ([`crate::queries::RemovedObject::used_by`],
//! conservative). Every query here only reads.

use std::time::Duration;

use tokio_postgres::Client;

use crate::migration::Migration;
use crate::queries::{self, QuerySourceError, Removal, RemovedObject};
use crate::runtime::error::RuntimeError;
use crate::runtime::gates::GateFailure;

/// `None`: the contract may run as far as this gate goes.
pub(crate) async fn check(
    client: &Client,
    contract: &Migration,
    window: Duration,
) -> Result<Option<GateFailure>, RuntimeError> {
    let mut removed = match removed_by(contract) {
        Some(removed) => removed,
        None => {
            return Ok(Some(GateFailure::RunningQueriesUnknown {
                reason: "the set holds no analysis of what this contract removes: build it \
                         with `migrations!()` or `check_dir`, or enable migrate-core's `lint` \
                         feature"
                    .to_owned(),
            }));
        }
    };
    removed.extend(dependent_views(client, &removed).await?);
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

/// What `contract` removes: stored by the check, or for a set built by hand read from its
/// statements where the `lint` feature is on; `None` where it is off.
fn removed_by(contract: &Migration) -> Option<Vec<RemovedObject>> {
    match &contract.analysis {
        Some(analysis) => Some(analysis.removes.to_vec()),
        #[cfg(feature = "lint")]
        None => Some(queries::removed_by(contract)),
        #[cfg(not(feature = "lint"))]
        None => None,
    }
}

/// Views over the dropped tables and columns, and views over those, from `pg_depend` (a view
/// depends on its source through its `pg_rewrite` rule). Names resolve through the session's
/// `search_path`, as the contract's own statements do.
async fn dependent_views(
    client: &Client,
    removed: &[RemovedObject],
) -> Result<Vec<RemovedObject>, RuntimeError> {
    let mut found: Vec<RemovedObject> = Vec::new();
    let mut queue: Vec<RemovedObject> = removed
        .iter()
        .filter(|object| {
            object.removal == Removal::Dropped && matches!(object.kind, "table" | "view" | "column")
        })
        .cloned()
        .collect();
    while let Some(object) = queue.pop() {
        let rows = client
            .query(
                "SELECT DISTINCT view.relname::text FROM pg_depend d \
                 JOIN pg_rewrite r ON r.oid = d.objid \
                 JOIN pg_class view ON view.oid = r.ev_class \
                 WHERE d.classid = 'pg_rewrite'::regclass \
                   AND d.refclassid = 'pg_class'::regclass \
                   AND d.refobjid = to_regclass(quote_ident($1)) \
                   AND view.oid <> d.refobjid \
                   AND ($2::text IS NULL OR d.refobjsubid = \
                        (SELECT attnum FROM pg_attribute \
                         WHERE attrelid = d.refobjid AND attname = $2)) \
                 ORDER BY 1",
                &[&object.name.as_ref(), &object.column.as_deref()],
            )
            .await
            .map_err(|error| RuntimeError::Database {
                action: "reading the views that depend on what a contract drops",
                error,
            })?;
        for row in rows {
            let view: String = row.get(0);
            let known = removed
                .iter()
                .chain(&found)
                .any(|o| o.column.is_none() && *o.name == *view);
            if known {
                continue;
            }
            let dependent = RemovedObject {
                kind: "view",
                name: view.into(),
                column: None,
                removal: Removal::Dependent {
                    on: object.object().into(),
                },
                line: object.line,
            };
            queue.push(RemovedObject {
                removal: Removal::Dropped,
                ..dependent.clone()
            });
            found.push(dependent);
        }
    }
    Ok(found)
}
