-- Migration 5: the table-sync state machine's persisted snapshot, the
-- copy lease, and the outbox of state changes.
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 5) then
        return;
    end if;

    alter table londiste.subscriber_table
        -- the XState snapshot (value and context) of the table's sync
        -- machine; NULL when the state was last set through the SQL
        -- functions, and then rebuilt from merge_state
        add column sync_state    jsonb,
        -- bumped by every state write: writers compare-and-set on it
        add column sync_version  int8 not null default 0,
        -- the copy worker working on the table, until when (heartbeat)
        add column lease_owner   text,
        add column lease_until   timestamptz,
        -- the copy's last reported progress (rows, bytes, ...), for status
        add column copy_progress jsonb;

    -- Every state change, written in the transaction that made it and
    -- relayed to JetStream by the replay service (published_at set then).
    create table londiste.sync_outbox (
        id            bigserial primary key,
        queue_name    text not null,
        table_name    text not null,
        from_state    text,
        to_state      text,
        event         jsonb not null,
        version       int8 not null,
        created_at    timestamptz not null default now(),
        published_at  timestamptz
    );
    create index sync_outbox_unpublished on londiste.sync_outbox (id) where published_at is null;

    insert into londiste.schema_migration (version, name) values (5, 'sync machine');
end
$migration$;
