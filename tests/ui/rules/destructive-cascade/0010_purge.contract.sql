-- migrate:requires 8
TRUNCATE audit_log CASCADE;