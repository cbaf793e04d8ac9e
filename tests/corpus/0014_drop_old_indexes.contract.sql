-- migrate:requires 3
-- The lock message names orders, the table the application waits for.
DROP INDEX IF EXISTS orders_gift_for_idx;
ALTER TABLE orders VALIDATE CONSTRAINT orders_gift_for_fkey;

-- migrate:down
