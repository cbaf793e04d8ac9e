-- VALIDATE scans under SHARE UPDATE EXCLUSIVE: reads and writes continue.
ALTER TABLE users VALIDATE CONSTRAINT users_email_normalized_not_null;
ALTER TABLE orders VALIDATE CONSTRAINT orders_status_known;

-- migrate:down
-- A constraint cannot be "unvalidated": re-add it NOT VALID to restore the previous schema.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_known;
ALTER TABLE orders ADD CONSTRAINT orders_status_known
    CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')) NOT VALID;
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_normalized_not_null;
ALTER TABLE users ADD CONSTRAINT users_email_normalized_not_null
    CHECK (email_normalized IS NOT NULL) NOT VALID;
