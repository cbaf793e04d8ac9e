SET lock_timeout = 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;