-- NOT VALID: instant, enforced for new rows only. Validated in the next migration.
ALTER TABLE users ADD CONSTRAINT users_email_normalized_not_null
    CHECK (email_normalized IS NOT NULL) NOT VALID;
ALTER TABLE orders ADD CONSTRAINT orders_status_known
    CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')) NOT VALID;

-- migrate:down
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_known;
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_normalized_not_null;
