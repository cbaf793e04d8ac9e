-- the expand the contract examples finish
SELECT 1;
