CREATE TABLE IF NOT EXISTS "open (id bigint);
