-- migrate:allow require-concurrent-index
CREATE INDEX IF NOT EXISTS i ON t (a);
