CREATE TABLE IF NOT EXISTS plans (id bigint PRIMARY KEY, name text NOT NULL, price numeric);
