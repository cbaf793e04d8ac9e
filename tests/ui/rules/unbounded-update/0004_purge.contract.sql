-- migrate:requires 3
DELETE FROM sessions;