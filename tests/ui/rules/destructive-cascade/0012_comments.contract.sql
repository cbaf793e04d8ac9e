-- migrate:requires 8
ALTER TABLE comments ADD COLUMN IF NOT EXISTS post_id bigint REFERENCES posts (id) ON DELETE CASCADE, DROP COLUMN IF EXISTS legacy_post_id CASCADE;