//! Gate 5 of the contract gates (see [`crate::runtime::gates`]), repeated where the contract
//! runs: the gates build the guard (they know which backfills a contract waits for), the
//! executor runs its recount inside the contract's own transaction.

use tokio_postgres::Client;

use super::error::{GateFailure, RuntimeError};
use crate::migration::Migration;

/// One backfill statement whose WHERE must match no row when a contract runs.
#[derive(Debug, Clone)]
pub(crate) struct PendingRows {
    pub(crate) version: u64,
    pub(crate) file: String,
    pub(crate) line: u32,
    pub(crate) table: String,
    /// `SELECT count(*) FROM (SELECT 1 FROM <table> WHERE (<pending>) LIMIT <cap>) ...`.
    pub(crate) count_sql: String,
}

/// Gate 5, kept for the contract's own transaction: the executor runs its check
/// after `BEGIN` and before the contract's first statement (in autocommit mode, right before
/// it). The count reads under the application's writes (no table lock: a scan under a lock
/// that blocks writes would stall a hot table), so a row committed between the count and the
/// contract's own lock is the one window left; the contract's DDL lock closes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowsGuard {
    contract_version: u64,
    contract_file: String,
    queries: Vec<PendingRows>,
}

impl RowsGuard {
    /// A guard of `contract` that counts nothing yet.
    pub(crate) fn new(contract: &Migration) -> RowsGuard {
        RowsGuard {
            contract_version: contract.version,
            contract_file: contract.file_name.to_string(),
            queries: Vec::new(),
        }
    }

    /// Counts `pending` too.
    pub(crate) fn watch(&mut self, pending: PendingRows) {
        self.queries.push(pending);
    }

    /// Refuses the contract when any backfill's WHERE still matches a row.
    pub(crate) async fn check(&self, client: &Client) -> Result<(), RuntimeError> {
        for pending in &self.queries {
            let remaining: i64 = client
                .query_one(&pending.count_sql, &[])
                .await
                .map_err(RuntimeError::database(
                    "counting rows a backfill has not done, before the contract",
                ))?
                .get(0);
            if remaining > 0 {
                return Err(RuntimeError::ContractGate {
                    version: self.contract_version,
                    file: self.contract_file.clone(),
                    failure: Box::new(GateFailure::BackfillRowsRemain {
                        version: pending.version,
                        file: pending.file.clone(),
                        line: pending.line,
                        table: pending.table.clone(),
                        remaining,
                    }),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// The counts it runs.
    pub(crate) fn len(&self) -> usize {
        self.queries.len()
    }
}
