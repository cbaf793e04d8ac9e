-- PostgreSQL 18: a named NOT NULL constraint added NOT VALID, validated in the next migration.
ALTER TABLE products ADD CONSTRAINT products_title_not_null NOT NULL title NOT VALID;

-- migrate:down
ALTER TABLE products DROP CONSTRAINT IF EXISTS products_title_not_null;
