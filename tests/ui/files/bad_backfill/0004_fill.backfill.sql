-- migrate:backfill table=users key=id batch=500
UPDATE users SET email_normalized = lower(u.email) FROM users u WHERE users.id = u.id AND users.email_normalized IS NULL;
UPDATE accounts SET plan = 'free' WHERE plan IS NULL;
UPDATE "Users" SET plan = 'free' WHERE plan IS NULL;
UPDATE Users SET plan = 'free' WHERE plan IS NULL;
UPDATE users SET plan = 'free' WHERE id > 5;
UPDATE users SET plan = NULL WHERE plan IS NULL;
