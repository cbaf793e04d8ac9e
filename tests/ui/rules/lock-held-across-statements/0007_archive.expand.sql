ALTER TABLE orders ADD COLUMN IF NOT EXISTS archived_at timestamptz;
INSERT INTO orders_archive (id, total) SELECT id, total FROM orders WHERE created_at < '2020-01-01';