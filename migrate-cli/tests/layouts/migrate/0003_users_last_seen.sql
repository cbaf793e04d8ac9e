ALTER TABLE users ADD COLUMN IF NOT EXISTS last_seen timestamp;
-- migrate:down
ALTER TABLE users DROP COLUMN IF EXISTS last_seen;
