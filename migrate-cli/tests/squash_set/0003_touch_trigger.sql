CREATE OR REPLACE FUNCTION touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- keep the row's time current

    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER accounts_touch BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE OR REPLACE VIEW account_totals AS
    SELECT a.id, a.email, coalesce(sum(i.total), 0) AS total
    FROM accounts a LEFT JOIN invoices i ON i.account_id = a.id
    GROUP BY a.id, a.email;
-- migrate:down
DROP VIEW IF EXISTS account_totals;
DROP TRIGGER IF EXISTS accounts_touch ON accounts;
DROP FUNCTION IF EXISTS touch_updated_at();
