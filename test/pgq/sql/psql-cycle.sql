-- The whole PgQ queue cycle from plain psql, with the Skytools 2 function
-- names, on a freshly installed database.  Run by psql-cycle.test.ts as
--     psql -v ON_ERROR_STOP=1 -X -q -At -f psql-cycle.sql DBURL
-- Every result line starts with a label so the test can check it.

select 'version', pgq.version();

-- create the queue and a consumer
select 'create_queue', pgq.create_queue('myqueue');
select 'create_queue_again', pgq.create_queue('myqueue');
select 'register_consumer', pgq.register_consumer('myqueue', 'consumer');
select 'next_batch_no_tick', coalesce(pgq.next_batch('myqueue', 'consumer')::text, 'NULL');

-- produce two events in one transaction
begin;
select 'insert_event', pgq.insert_event('myqueue', 'type1', 'data1');
select 'insert_event', pgq.insert_event('myqueue', 'type2', 'data2', 'ex1', 'ex2', 'ex3', 'ex4');
select 'current_event_table', pgq.current_event_table('myqueue');
commit;

-- tick: force_tick makes the ticker's next call tick
select 'force_tick', pgq.force_tick('myqueue');
select 'ticker', pgq.ticker('myqueue');

-- consume: open the batch, read it, send event 2 to retry, finish
select pgq.next_batch('myqueue', 'consumer') as batch_id \gset
select 'batch', :batch_id;
select 'batch_again', pgq.next_batch('myqueue', 'consumer');
select 'batch_info', queue_name, consumer_name, prev_tick_id, tick_id from pgq.get_batch_info(:batch_id);
select 'event', ev_id, coalesce(ev_retry::text, 'NULL'), ev_type, ev_data,
       coalesce(ev_extra1, 'NULL'), coalesce(ev_extra4, 'NULL')
  from pgq.get_batch_events(:batch_id);
select 'event_retry', pgq.event_retry(:batch_id, 2, 0);
select 'event_retry_again', pgq.event_retry(:batch_id, 2, 0);
select 'finish_batch', pgq.finish_batch(:batch_id);
select 'finish_batch_again', pgq.finish_batch(:batch_id);
select 'next_batch_no_tick', coalesce(pgq.next_batch('myqueue', 'consumer')::text, 'NULL');

-- the retry mover and the next tick bring event 2 back, retry count 1
select 'maint_retry_events', pgq.maint_retry_events();
select 'force_tick', pgq.force_tick('myqueue');
select 'ticker', pgq.ticker('myqueue');
select pgq.next_batch('myqueue', 'consumer') as batch_id \gset
select 'batch', :batch_id;
select 'event', ev_id, coalesce(ev_retry::text, 'NULL'), ev_type, ev_data,
       coalesce(ev_extra1, 'NULL'), coalesce(ev_extra4, 'NULL')
  from pgq.get_batch_events(:batch_id);
select 'finish_batch', pgq.finish_batch(:batch_id);

select 'consumer_info', queue_name, consumer_name, last_tick, coalesce(current_batch::text, 'NULL')
  from pgq.get_consumer_info('myqueue', 'consumer');

-- and take it all down again
select 'unregister_consumer', pgq.unregister_consumer('myqueue', 'consumer');
select 'drop_queue', pgq.drop_queue('myqueue');
select 'queues_left', count(*) from pgq.queue;
