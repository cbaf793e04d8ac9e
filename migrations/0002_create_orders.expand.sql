CREATE TABLE IF NOT EXISTS orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    status text NOT NULL DEFAULT 'pending',
    total_cents bigint NOT NULL DEFAULT 0,
    placed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_total_non_negative CHECK (total_cents >= 0)
);

CREATE TABLE IF NOT EXISTS order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no integer NOT NULL,
    sku text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    action text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS orders_user_id_idx ON orders (user_id);
CREATE INDEX IF NOT EXISTS orders_placed_at_idx ON orders (placed_at DESC);
CREATE INDEX IF NOT EXISTS orders_pending_idx ON orders (placed_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS audit_log_row_idx ON audit_log (table_name, row_id);

CREATE OR REPLACE FUNCTION log_order_change() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO audit_log (table_name, row_id, action) VALUES ('orders', NEW.id, TG_OP);
    RETURN NEW;
END
$body$;

CREATE OR REPLACE TRIGGER orders_audit
    AFTER INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION log_order_change();

CREATE OR REPLACE VIEW order_totals AS
    SELECT o.user_id, count(*) AS order_count, sum(o.total_cents) AS total_cents
    FROM orders o
    GROUP BY o.user_id;

COMMENT ON VIEW order_totals IS 'Per-user order count and spend; read by reporting';
GRANT SELECT ON order_totals TO PUBLIC;
REVOKE ALL ON audit_log FROM PUBLIC;

-- migrate:down
DROP VIEW IF EXISTS order_totals;
DROP TRIGGER IF EXISTS orders_audit ON orders;
DROP FUNCTION IF EXISTS log_order_change();
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS order_items;
DROP TABLE IF EXISTS orders;
