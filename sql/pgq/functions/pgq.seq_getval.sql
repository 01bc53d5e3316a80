-- ----------------------------------------------------------------------
-- Function: pgq.seq_getval(i_seq_name)
--
--      Last value handed out by a sequence, without moving it.
--
-- Parameters:
--      i_seq_name - qualified sequence name
--
-- Returns:
--      The last value, 0 when the sequence was never used.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.seq_getval(i_seq_name text)
returns int8 as $$
    select coalesce(pg_sequence_last_value(i_seq_name::regclass), 0);
$$ language sql stable strict;
