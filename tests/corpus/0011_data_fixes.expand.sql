-- Pinned by the primary key and by a unique column: one row each.
UPDATE customers SET name = 'Ada Lovelace' WHERE id = 1;
UPDATE products SET price = 9.90 WHERE sku IN ('A-1', 'A-2');
DELETE FROM order_lines WHERE order_id = 42 AND product_id = 7;
-- Not bounded: every row matches.
UPDATE orders SET status = 'new' WHERE 1 = 1;
-- Not bounded: may match the whole table.
UPDATE orders SET total = 0 WHERE total IS NULL;
-- A table the set declares no key of.
DELETE FROM audit_log WHERE id = 3;
-- migrate:allow unbounded-update countries holds about 250 rows
UPDATE countries SET name = upper(name) WHERE name <> upper(name);

-- migrate:down
