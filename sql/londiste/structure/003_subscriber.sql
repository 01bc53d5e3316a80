-- Migration 3: subscriber registrations and position (the Skytools 2
-- londiste tables; docs/londiste.md).
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 3) then
        return;
    end if;

    -- Tables this subscriber replicates, with their sync state.
    create table londiste.subscriber_table (
        nr             serial not null,
        queue_name     text not null,
        table_name     text not null,
        -- snapshot of the provider copy; events visible in it are skipped
        snapshot       text,
        -- NULL, in-copy, catching-up, wanna-sync:<tick>, do-sync:<tick>, ok
        merge_state    text,
        trigger_name   text,
        skip_truncate  boolean,
        primary key (queue_name, table_name)
    );

    -- Sequences this subscriber takes from the provider.
    create table londiste.subscriber_seq (
        nr          serial not null,
        queue_name  text not null,
        seq_name    text not null,
        primary key (queue_name, seq_name)
    );

    -- The end tick of the last batch applied, per consumer: written in the
    -- same transaction as the batch's data.
    create table londiste.completed (
        consumer_id   text primary key,
        last_tick_id  int8 not null
    );

    insert into londiste.schema_migration (version, name) values (3, 'subscriber');
end
$migration$;
