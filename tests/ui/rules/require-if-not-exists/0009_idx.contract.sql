-- migrate:requires 6
DROP INDEX CONCURRENTLY idx_users_email;