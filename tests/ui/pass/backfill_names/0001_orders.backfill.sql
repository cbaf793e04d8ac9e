-- migrate:backfill table="App"."Orders" key=Id batch=10
UPDATE "App"."Orders" SET note = 'x' WHERE note IS NULL;
