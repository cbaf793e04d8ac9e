-- migrate:requires 2
ALTER TABLE order_lines DROP COLUMN IF EXISTS note CASCADE;
TRUNCATE sessions CASCADE;

-- migrate:down
