SET SESSION statement_timeout TO '1h';
RESET ROLE;
SET search_path TO app, public;
RESET application_name;
SELECT set_config('lock_timeout', '0', false);