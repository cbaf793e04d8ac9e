-- migrate:replaces 1,two,4
CREATE TABLE IF NOT EXISTS c (id bigint);
