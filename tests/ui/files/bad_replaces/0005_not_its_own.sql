-- migrate:replaces 1,2
CREATE TABLE IF NOT EXISTS d (id bigint);
