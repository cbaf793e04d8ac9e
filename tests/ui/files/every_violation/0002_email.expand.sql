CREATE INDEX idx_users_email ON users (email);
UPDATE users SET email = lower(email);
ALTER TABLE users DROP COLUMN IF EXISTS legacy;
