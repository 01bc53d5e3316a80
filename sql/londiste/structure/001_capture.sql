-- Migration 1: nothing but the schema yet; the capture functions are
-- generated per table by londiste.create_capture.
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 1) then
        return;
    end if;
    grant usage on schema londiste to public;
    insert into londiste.schema_migration (version, name) values (1, 'schema');
end
$migration$;
