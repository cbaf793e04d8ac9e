-- migrate:replaces 1,2,3
CREATE TABLE IF NOT EXISTS b (id bigint);
