-- Migration 1: the PgQ tables.
--
-- pgq.event_template is the root of all event tables.  It is partitioned by
-- queue (pgq.event_<queue_id>) and each queue's table by rotation slot
-- (pgq.event_<queue_id>_<n>).  Producers insert through the root with one
-- static INSERT, so PL/pgSQL keeps a cached plan and no per-event dynamic SQL
-- is needed; consumers read the slot tables directly, as in PgQ.
do $migration$
begin
    if exists (select 1 from pgq.schema_migration where version = 1) then
        return;
    end if;

    -- Queues and their ticker settings.
    create table pgq.queue (
        queue_id                  serial primary key,
        queue_name                text not null unique,

        queue_ntables             int4 not null default 3,
        queue_cur_table           int4 not null default 0,
        queue_rotation_period     interval not null default '2 hours',
        -- txid of the rotating transaction and of one that ran after it committed;
        -- step2 NULL means the last rotation is not confirmed yet.
        queue_switch_step1        xid8 not null default pg_current_xact_id(),
        queue_switch_step2        xid8 default pg_current_xact_id(),
        queue_switch_time         timestamptz not null default now(),

        queue_external_ticker     boolean not null default false,
        queue_ticker_paused       boolean not null default false,
        queue_ticker_max_count    int4 not null default 500,
        queue_ticker_max_lag      interval not null default '3 seconds',
        queue_ticker_idle_period  interval not null default '1 minute',

        queue_data_pfx            text not null,
        queue_event_seq           text not null,
        queue_tick_seq            text not null
    );

    -- Consumer names; rows are never deleted.
    create table pgq.consumer (
        co_id    serial primary key,
        co_name  text not null unique
    );

    -- A consumer's position on a queue.
    create table pgq.subscription (
        sub_id         serial not null,
        sub_queue      int4 not null references pgq.queue (queue_id),
        sub_consumer   int4 not null references pgq.consumer (co_id),
        sub_last_tick  int8 not null,
        sub_active     timestamptz not null default now(),
        sub_batch      int8,
        sub_next_tick  int8,
        primary key (sub_queue, sub_consumer),
        unique (sub_id)
    );
    create unique index subscription_batch_idx on pgq.subscription (sub_batch);

    -- Ticks: the snapshots that cut the event stream into batches.
    create table pgq.tick (
        tick_queue      int4 not null references pgq.queue (queue_id),
        tick_id         int8 not null,
        tick_time       timestamptz not null default now(),
        tick_snapshot   pg_snapshot not null default pg_current_snapshot(),
        -- value of the queue's event sequence at tick time: new-event counts
        -- for the tick decision and for pending-event statistics.
        tick_event_seq  int8 not null,
        primary key (tick_queue, tick_id)
    );

    create sequence pgq.batch_id_seq;

    -- Root of every event table.
    create table pgq.event_template (
        ev_id      int8 not null,
        ev_time    timestamptz not null,
        ev_txid    xid8 not null default pg_current_xact_id(),
        ev_owner   int4,
        ev_retry   int4,
        ev_type    text,
        ev_data    text,
        ev_extra1  text,
        ev_extra2  text,
        ev_extra3  text,
        ev_extra4  text,
        -- partition keys: the queue and its rotation slot
        ev_queue   int4 not null,
        ev_slot    int2 not null
    ) partition by list (ev_queue);
    create index event_template_txid_idx on pgq.event_template (ev_txid);

    -- Events waiting to be redelivered to one consumer.
    create table pgq.retry_queue (
        ev_retry_after  timestamptz not null,
        ev_id           int8 not null,
        ev_time         timestamptz not null,
        ev_txid         xid8,
        ev_owner        int4 not null references pgq.subscription (sub_id) on delete cascade,
        ev_retry        int4,
        ev_type         text,
        ev_data         text,
        ev_extra1       text,
        ev_extra2       text,
        ev_extra3       text,
        ev_extra4       text,
        primary key (ev_owner, ev_id)
    );
    create index retry_queue_after_idx on pgq.retry_queue (ev_retry_after);

    -- Events a consumer gave up on.
    create table pgq.failed_queue (
        ev_failed_reason  text,
        ev_failed_time    timestamptz not null,
        ev_id             int8 not null,
        ev_time           timestamptz not null,
        ev_txid           xid8,
        ev_owner          int4 not null references pgq.subscription (sub_id) on delete cascade,
        ev_retry          int4,
        ev_type           text,
        ev_data           text,
        ev_extra1         text,
        ev_extra2         text,
        ev_extra3         text,
        ev_extra4         text,
        primary key (ev_owner, ev_id)
    );

    grant usage on schema pgq to public;
    grant select on pgq.queue, pgq.consumer, pgq.subscription, pgq.tick to public;
    grant select, insert on pgq.event_template to public;

    insert into pgq.schema_migration (version, name) values (1, 'tables');
end
$migration$;
