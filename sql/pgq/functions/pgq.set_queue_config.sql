-- ----------------------------------------------------------------------
-- Function: pgq.set_queue_config(x_queue_name, x_param_name, x_param_value)
--
--      Changes one queue setting.  The 'queue_' prefix of the name is
--      optional.  Settings: ticker_max_count, ticker_max_lag,
--      ticker_idle_period, rotation_period, ticker_paused,
--      external_ticker.
--
-- Returns:
--      1
--
-- Errors:
--      'No such event queue', 'unknown queue setting: <name>', and the
--      type's own error for a bad value.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      update - pgq.queue
-- ----------------------------------------------------------------------
create or replace function pgq.set_queue_config(
    x_queue_name text, x_param_name text, x_param_value text)
returns integer as $$
declare
    v_param  text;
    v_qid    int4;
begin
    select queue_id into v_qid from pgq.queue where queue_name = x_queue_name for update;
    if not found then
        raise exception 'No such event queue';
    end if;

    v_param := regexp_replace(lower(x_param_name), '^queue_', '');
    case v_param
        when 'ticker_max_count' then
            update pgq.queue set queue_ticker_max_count = x_param_value::int4 where queue_id = v_qid;
        when 'ticker_max_lag' then
            update pgq.queue set queue_ticker_max_lag = x_param_value::interval where queue_id = v_qid;
        when 'ticker_idle_period' then
            update pgq.queue set queue_ticker_idle_period = x_param_value::interval where queue_id = v_qid;
        when 'rotation_period' then
            update pgq.queue set queue_rotation_period = x_param_value::interval where queue_id = v_qid;
        when 'ticker_paused' then
            update pgq.queue set queue_ticker_paused = x_param_value::boolean where queue_id = v_qid;
        when 'external_ticker' then
            update pgq.queue set queue_external_ticker = x_param_value::boolean where queue_id = v_qid;
        else
            raise exception 'unknown queue setting: %', x_param_name;
    end case;
    return 1;
end;
$$ language plpgsql;
