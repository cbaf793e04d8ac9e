-- migrate:requires 3
-- Contract: every release now reads email_normalized. The validated CHECK from 0006 lets
-- SET NOT NULL skip its full-table scan; the old index on the raw email goes.
ALTER TABLE users ALTER COLUMN email_normalized SET NOT NULL;
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_normalized_not_null;
DROP INDEX CONCURRENTLY IF EXISTS users_email_key;

-- migrate:down
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);
-- This part runs statement by statement (CONCURRENTLY): DROP ... IF EXISTS first, so a re-run
-- after a partial run starts clean.
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_normalized_not_null;
ALTER TABLE users ADD CONSTRAINT users_email_normalized_not_null
    CHECK (email_normalized IS NOT NULL) NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT users_email_normalized_not_null;
ALTER TABLE users ALTER COLUMN email_normalized DROP NOT NULL;
