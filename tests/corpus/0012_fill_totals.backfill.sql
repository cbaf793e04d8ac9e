-- migrate:backfill table=orders key=id batch=500
UPDATE orders SET total = 0 WHERE total IS NULL;

-- migrate:down
