CREATE TABLE IF NOT EXISTS events (
    id serial PRIMARY KEY,
    happened_at timestamp NOT NULL,
    payload json,
    code varchar(16),
    price money
);