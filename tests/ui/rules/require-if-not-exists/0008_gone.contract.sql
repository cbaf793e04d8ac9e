-- migrate:requires 2
DROP TABLE legacy_users;