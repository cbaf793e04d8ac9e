-- A byte-order mark, CRLF line endings and non-ASCII names: the packed set must give
-- back every statement exactly as check_dir reads it.
CREATE TABLE IF NOT EXISTS "café" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    legacy_note text
);
COMMENT ON TABLE "café" IS 'naïve ☕; a semicolon in a string';
CREATE TABLE IF NOT EXISTS orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, total numeric, total_cents bigint);

-- migrate:down
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS "café";
