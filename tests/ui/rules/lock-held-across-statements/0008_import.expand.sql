ALTER TABLE orders ADD COLUMN IF NOT EXISTS source text;
CREATE TABLE IF NOT EXISTS orders_staging (id bigint, total numeric);
INSERT INTO orders_staging (id, total) SELECT id, total FROM legacy_orders;