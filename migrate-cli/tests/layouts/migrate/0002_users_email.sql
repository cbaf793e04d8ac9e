CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);
-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS users_email;
