-- migrate:backfill table=users key=id
UPDATE users SET email_normalized = lower(email);