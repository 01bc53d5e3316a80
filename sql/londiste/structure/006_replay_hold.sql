-- Migration 6: a hold on replay at a tick, for a consistent read of both
-- sides (compare/repair): replay applies batches up to the tick and then
-- waits until the hold is released or expires (so a dead requester never
-- leaves replay paused).
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 6) then
        return;
    end if;

    create table londiste.replay_hold (
        consumer_id   text primary key,
        -- replay stops once its recorded tick is this one
        tick_id       int8 not null,
        requested_by  text,
        expires_at    timestamptz not null
    );

    insert into londiste.schema_migration (version, name) values (6, 'replay hold');
end
$migration$;
