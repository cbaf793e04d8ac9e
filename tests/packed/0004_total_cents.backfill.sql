-- migrate:backfill table=orders key=id batch=500 delay=10
-- migrate:compare source=orders target=orders key=id columns=total_cents map=(total * 100)::bigint
UPDATE orders SET total_cents = (total * 100)::bigint WHERE total_cents IS NULL AND total IS NOT NULL;
