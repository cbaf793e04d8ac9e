-- CONCURRENTLY: this file runs in autocommit mode.
CREATE INDEX CONCURRENTLY IF NOT EXISTS cafe_name_idx ON "café" (name);
-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS cafe_name_idx;
