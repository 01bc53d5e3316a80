-- Migration 8: a consumer the operator unregistered (`subscriber
-- unregister`) stays unregistered: replay does not register it again
-- until `subscriber register` deletes the row.
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 8) then
        return;
    end if;

    create table londiste.unregistered (
        consumer_id      text primary key,
        unregistered_at  timestamptz not null default now()
    );

    insert into londiste.schema_migration (version, name) values (8, 'operator unregister');
end
$migration$;
