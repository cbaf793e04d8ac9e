SELECT 1; -- migrate:down
