-- migrate:requires 8
ALTER TABLE users DROP COLUMN IF EXISTS legacy_email CASCADE;