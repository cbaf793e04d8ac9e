-- The deferrability change is harmless; the SET NOT NULL beside it scans the table.
ALTER TABLE orders
    ALTER COLUMN status SET NOT NULL,
    ALTER CONSTRAINT orders_customer_id_fkey DEFERRABLE INITIALLY DEFERRED;

-- migrate:down
ALTER TABLE orders ALTER COLUMN status DROP NOT NULL;
