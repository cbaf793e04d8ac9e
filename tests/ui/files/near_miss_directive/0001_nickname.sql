-- migrate:up
ALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;

-- Migrate:down
ALTER TABLE users DROP COLUMN IF EXISTS nickname;
