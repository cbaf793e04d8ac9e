ALTER TABLE users ADD COLUMN IF NOT EXISTS public_id uuid DEFAULT gen_random_uuid();
