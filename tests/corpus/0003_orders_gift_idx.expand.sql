-- migrate:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_gift_for_idx ON orders (gift_for);

-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS orders_gift_for_idx;
