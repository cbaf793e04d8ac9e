-- migrate:no-transaction
SET LOCAL lock_timeout = '10s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);