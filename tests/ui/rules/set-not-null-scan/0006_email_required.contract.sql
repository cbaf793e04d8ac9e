-- migrate:requires 5
ALTER TABLE users ALTER COLUMN email SET NOT NULL;