ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'shipped' AFTER 'paid';
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'shipped';