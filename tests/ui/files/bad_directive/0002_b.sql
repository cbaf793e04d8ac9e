-- migrate:requires 1
SELECT 1;
