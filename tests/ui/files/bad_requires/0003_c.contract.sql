-- migrate:requires 2
ALTER TABLE t DROP COLUMN IF EXISTS a;
