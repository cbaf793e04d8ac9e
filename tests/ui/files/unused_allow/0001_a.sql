-- migrate:allow require-concurrent-index stale: the statement is already safe
CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);
