-- Migration 2: provider registrations (the Skytools 2 londiste tables).
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 2) then
        return;
    end if;

    -- Tables whose changes are captured into a queue.
    create table londiste.provider_table (
        nr            serial not null,
        queue_name    text not null,
        table_name    text not null,
        trigger_name  text not null,
        primary key (queue_name, table_name)
    );

    -- Sequences whose values are pushed to subscribers.
    create table londiste.provider_seq (
        nr          serial not null,
        queue_name  text not null,
        seq_name    text not null,
        primary key (queue_name, seq_name)
    );

    insert into londiste.schema_migration (version, name) values (2, 'provider');
end
$migration$;
