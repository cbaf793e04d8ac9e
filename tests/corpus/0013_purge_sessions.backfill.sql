-- migrate:backfill table=sessions key=id batch=1000 delay=50
DELETE FROM sessions WHERE expires_at < '2024-01-01';

-- migrate:down
