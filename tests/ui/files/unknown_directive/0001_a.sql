-- migrate:transactional
SELECT 1;
