-- Expand: a normalised copy of the email for case-insensitive login. The old release keeps
-- working (it never reads the new columns); the trigger below dual-writes new rows.
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_normalized text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified_at timestamptz;

CREATE OR REPLACE FUNCTION users_normalize_email() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.email_normalized := lower(NEW.email);
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER users_normalize_email
    BEFORE INSERT OR UPDATE OF email ON users
    FOR EACH ROW EXECUTE FUNCTION users_normalize_email();

-- CONCURRENTLY: this file runs in autocommit mode, one statement at a time.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_normalized_key ON users (email_normalized);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_verified_idx ON users (email_verified_at)
    WHERE email_verified_at IS NOT NULL;

-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS users_email_verified_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_email_normalized_key;
DROP TRIGGER IF EXISTS users_normalize_email ON users;
DROP FUNCTION IF EXISTS users_normalize_email();
ALTER TABLE users DROP COLUMN IF EXISTS email_verified_at;
ALTER TABLE users DROP COLUMN IF EXISTS email_normalized;
