-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);

-- migrate:down transaction:false
DROP INDEX CONCURRENTLY IF EXISTS users_email;
