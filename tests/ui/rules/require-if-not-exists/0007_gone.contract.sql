-- migrate:requires 2
ALTER TABLE users DROP COLUMN legacy_name;