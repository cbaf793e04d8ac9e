-- A referential action is not a destructive CASCADE.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS gift_for bigint REFERENCES customers (id) ON DELETE SET NULL;
ALTER TABLE order_lines ADD COLUMN IF NOT EXISTS note text;

-- migrate:down
ALTER TABLE order_lines DROP COLUMN IF EXISTS note;
ALTER TABLE orders DROP COLUMN IF EXISTS gift_for;
