-- migrate:requires 18
-- The validated CHECK spares the scan.
ALTER TABLE customers ALTER COLUMN name SET NOT NULL;
ALTER TABLE customers DROP CONSTRAINT IF EXISTS customers_name_not_null;

-- migrate:down
ALTER TABLE customers ALTER COLUMN name DROP NOT NULL;
