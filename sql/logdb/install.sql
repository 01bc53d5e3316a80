-- logdb: a sample log database for the services' log records (the
-- `log_db` config key, docs/logdb.md).  The services insert each record
-- as an event into the PgQ queue `logdb` of this database; logdb.load()
-- moves the queue's batches into the table logdb.record, where
-- `pgqadm CONF logs` (or any SQL) reads them.  Needs PgQ first:
--
--     psql -v ON_ERROR_STOP=1 -f sql/pgq/install.sql    LOGDB
--     psql -v ON_ERROR_STOP=1 -f sql/logdb/install.sql  LOGDB
--
-- One transaction; running it again changes nothing.
\set ON_ERROR_STOP 1
begin;
set local client_min_messages = warning;

create schema if not exists logdb;

-- One row per log record.  The columns are the fields every record has
-- (pino's JSON line, shared/log.ts); `record` is the whole line.
create table if not exists logdb.record (
    id          bigserial primary key,
    time        timestamptz not null,
    -- pino's number: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal
    level       int4 not null,
    service     text,
    job         text,
    host        text,
    pid         int4,
    msg         text,
    record      jsonb not null,
    -- the PgQ event it came in: a batch loaded twice is refused, not doubled
    ev_id       int8 not null,
    loaded_at   timestamptz not null default now(),
    unique (ev_id)
);
create index if not exists record_time_idx on logdb.record (time);
create index if not exists record_service_time_idx on logdb.record (service, time);
create index if not exists record_level_time_idx on logdb.record (level, time);

-- The queue the services write into, and the loader's registration on it.
select pgq.create_queue('logdb');
select pgq.register_consumer('logdb', 'logdb_loader');

\ir functions/logdb.load.sql

commit;
