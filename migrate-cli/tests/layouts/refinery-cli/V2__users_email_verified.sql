-- refinery runs every migration in a transaction (it has no switch for CONCURRENTLY).
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified boolean;
