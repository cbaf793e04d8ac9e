-- migrate:allow require-concurent-index typo in the rule id
CREATE INDEX IF NOT EXISTS i ON t (a);
