-- Dollar quotes with semicolons inside, two statements on one line.
CREATE OR REPLACE FUNCTION cafe_touch() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    NEW.name := trim(NEW.name); -- a comment; with a semicolon
    RETURN NEW;
END
$body$;
COMMENT ON FUNCTION cafe_touch() IS 'one'; COMMENT ON FUNCTION cafe_touch() IS 'two';
-- migrate:down
DROP FUNCTION IF EXISTS cafe_touch();
