-- migrate:requires 2
DROP INDEX IF EXISTS idx_orders_created;