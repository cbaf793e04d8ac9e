CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TYPE mood AS ENUM ('happy', 'sad');
-- migrate:down
DROP TYPE IF EXISTS mood;
DROP EXTENSION IF EXISTS pgcrypto;
