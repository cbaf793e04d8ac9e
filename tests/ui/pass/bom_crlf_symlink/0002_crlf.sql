-- migrate:up
CREATE TABLE IF NOT EXISTS crlf_t (id bigint PRIMARY KEY);
-- migrate:down
DROP TABLE IF EXISTS crlf_t;
