-- A table made by CREATE TABLE AS holds every copied row: its foreign key is validated by a
-- scan while customers' writes wait.
CREATE TABLE IF NOT EXISTS customer_totals AS
    SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id;
ALTER TABLE customer_totals
    ADD CONSTRAINT customer_totals_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);
CREATE INDEX IF NOT EXISTS customer_totals_customer_id_idx ON customer_totals (customer_id);

-- migrate:down
DROP TABLE IF EXISTS customer_totals;
