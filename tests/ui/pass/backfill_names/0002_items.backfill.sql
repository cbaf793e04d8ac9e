-- migrate:backfill table=Items key=ID
UPDATE items SET note = 'x' WHERE note IS NULL;
