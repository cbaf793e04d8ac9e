-- migrate:backfill table=users key=id
-- What `migrate verify --compare` checks (and `migrate reconcile` re-derives): every user's
-- email_normalized is lower(email).
-- migrate:compare source=users target=users key=id columns=email_normalized map=lower(email)
-- Runs in short keyed batches paced by the controller; the WHERE makes it idempotent and
-- resumable.
UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;

-- migrate:down
-- Data only: the schema is unchanged, nothing to revert.
