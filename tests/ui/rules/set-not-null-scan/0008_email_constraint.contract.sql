-- migrate:requires 5
ALTER TABLE users ADD CONSTRAINT users_email_not_null NOT NULL email;