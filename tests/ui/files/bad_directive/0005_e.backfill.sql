-- migrate:backfill table="Orders key=id
UPDATE "Orders" SET a = 1 WHERE a IS NULL;
