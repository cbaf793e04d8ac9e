-- migrate:requires 3
ALTER TABLE invoices ALTER COLUMN amount TYPE numeric(14, 2);
