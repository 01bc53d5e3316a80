-- Migration 4: what a subscriber table needs beyond Skytools 2's columns:
-- a destination name (table redirection), a visible per-table error, and
-- the foreign keys set aside while a table is not in sync.
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 4) then
        return;
    end if;

    alter table londiste.subscriber_table
        -- the subscriber table the changes go to, when not the same name
        -- (canonical form); NULL means table_name
        add column dest_table  text,
        -- why replay stopped applying this table (merge_state 'error')
        add column last_error  text,
        add column error_time  timestamptz;

    -- Foreign keys of subscriber tables kept aside until both of their
    -- tables are in sync (restored by the copy), listed by `subscriber fkeys`.
    create table londiste.subscriber_pending_fkeys (
        from_table       text not null,
        to_table         text not null,
        fkey_name        text not null,
        fkey_def         text not null,
        primary key (from_table, fkey_name)
    );

    insert into londiste.schema_migration (version, name) values (4, 'subscriber state');
end
$migration$;
