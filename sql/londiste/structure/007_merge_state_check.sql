-- Migration 7: merge_state and the persisted machine state can never
-- disagree.  A row whose two say different things (a plain-SQL write of
-- merge_state made before plain writes were honoured) keeps the text, as
-- the person who wrote it meant: its machine state is rebuilt from it.
do $migration$
begin
    if exists (select 1 from londiste.schema_migration where version = 7) then
        return;
    end if;

    update londiste.subscriber_table
       set sync_state = null,
           sync_version = sync_version + 1
     where sync_state is not null
       and merge_state is distinct from londiste.sync_state_text(sync_state);

    alter table londiste.subscriber_table
        add constraint subscriber_table_merge_state_matches
        check (sync_state is null or merge_state is not distinct from londiste.sync_state_text(sync_state));

    insert into londiste.schema_migration (version, name) values (7, 'merge_state matches the machine');
end
$migration$;
