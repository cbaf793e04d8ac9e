-- migrate:requires 8
DROP SCHEMA IF EXISTS reporting;