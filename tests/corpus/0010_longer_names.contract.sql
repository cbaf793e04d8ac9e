-- migrate:requires 1
-- No rewrite on PostgreSQL 9.2+ (the message says so), still an ACCESS EXCLUSIVE lock.
ALTER TABLE customers ALTER COLUMN name TYPE varchar(200);
-- A real rewrite.
ALTER TABLE orders ALTER COLUMN total TYPE numeric(14, 4);

-- migrate:down
