-- migrate:requires 1
-- migrate:requires-compare
ALTER TABLE "café" DROP COLUMN IF EXISTS legacy_note;
