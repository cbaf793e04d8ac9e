-- migrate:frobnicate
SELECT 1;
