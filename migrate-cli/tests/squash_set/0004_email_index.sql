CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_key ON accounts (lower(email));
-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS accounts_email_key;
