DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'order_status') THEN
        CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
    END IF;
END
$$;

-- migrate:allow unparseable only creates a type, reviewed
DO $$ BEGIN CREATE TYPE payment_kind AS ENUM ('card', 'transfer'); EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- migrate:down
