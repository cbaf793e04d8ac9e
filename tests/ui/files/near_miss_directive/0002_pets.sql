CREATE TABLE IF NOT EXISTS pets (id bigint);
--migrate:down
DROP TABLE IF EXISTS pets;
