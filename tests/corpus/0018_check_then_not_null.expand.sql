ALTER TABLE customers ADD CONSTRAINT customers_name_not_null CHECK (name IS NOT NULL) NOT VALID;

-- migrate:down
ALTER TABLE customers DROP CONSTRAINT IF EXISTS customers_name_not_null;
