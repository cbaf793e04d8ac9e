-- One statement sqlparser cannot parse whole: every action is still read.
ALTER TABLE sessions
    DROP CONSTRAINT IF EXISTS sessions_pkey,
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (id, customer_id),
    ALTER COLUMN expires_at SET NOT NULL,
    ADD CONSTRAINT sessions_customer_not_null NOT NULL customer_id,
    ALTER CONSTRAINT sessions_customer_fk NOT DEFERRABLE,
    DROP COLUMN IF EXISTS legacy_token,
    SET ACCESS METHOD heap;

-- migrate:down
