ALTER TABLE accounts ADD COLUMN IF NOT EXISTS nickname text;
-- migrate:down
ALTER TABLE accounts DROP COLUMN IF EXISTS nickname;
