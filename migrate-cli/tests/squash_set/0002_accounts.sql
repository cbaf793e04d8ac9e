CREATE TABLE IF NOT EXISTS accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token uuid NOT NULL DEFAULT gen_random_uuid(),
    email text NOT NULL,
    feeling mood NOT NULL DEFAULT 'happy',
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_shape CHECK (position('@' in email) > 1)
);
CREATE SEQUENCE IF NOT EXISTS invoice_numbers START 1000;
CREATE TABLE IF NOT EXISTS invoices (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    number bigint NOT NULL DEFAULT nextval('invoice_numbers'),
    total numeric(12, 2) NOT NULL,
    UNIQUE (number)
);
CREATE INDEX IF NOT EXISTS invoices_account_id ON invoices (account_id);
-- migrate:down
DROP TABLE IF EXISTS invoices;
DROP SEQUENCE IF EXISTS invoice_numbers;
DROP TABLE IF EXISTS accounts;
