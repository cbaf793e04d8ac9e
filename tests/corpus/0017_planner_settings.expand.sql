ALTER TABLE orders ALTER COLUMN status SET STATISTICS 1000, ALTER COLUMN status SET (n_distinct = 5);
ALTER TABLE orders ALTER COLUMN total SET STORAGE MAIN;
ALTER TABLE orders ALTER CONSTRAINT orders_customer_id_fkey NOT DEFERRABLE;
ALTER TABLE orders CLUSTER ON orders_pkey;
CREATE PUBLICATION shop_orders FOR TABLE orders;
COMMENT ON COLUMN orders.status IS $$the order's state$$;

-- migrate:down
DROP PUBLICATION IF EXISTS shop_orders;
