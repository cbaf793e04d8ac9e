-- no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);
