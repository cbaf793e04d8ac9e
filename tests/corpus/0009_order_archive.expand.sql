-- A new table that is still empty: its constraints are instant.
CREATE TABLE IF NOT EXISTS order_archive (LIKE orders INCLUDING DEFAULTS);
ALTER TABLE order_archive ADD CONSTRAINT order_archive_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id);
-- Filled from an existing table: no longer empty.
INSERT INTO order_archive SELECT * FROM orders WHERE placed_at < '2020-01-01';
ALTER TABLE order_archive ADD CONSTRAINT order_archive_gift_fk
    FOREIGN KEY (gift_for) REFERENCES customers (id);

-- migrate:down
DROP TABLE IF EXISTS order_archive;
