-- migrate:backfill table=users key=id batch=1000 delay=0
-- Runs in short keyed batches; the WHERE makes it idempotent and resumable.
UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;

-- migrate:down
-- Data only: the schema is unchanged, nothing to revert.
