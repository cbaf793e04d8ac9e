ALTER TABLE customers VALIDATE CONSTRAINT customers_name_not_null;

-- migrate:down
