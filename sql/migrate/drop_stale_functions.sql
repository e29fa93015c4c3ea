-- Run right after the function files, in the same transaction: `create or replace` rewrites the
-- catalog row of every function a file defines, so a pyembed function this transaction did not
-- write is one an older release created and no file creates any more (the generated search
-- function search_unfiltered is regenerated at the end of 20_search.sql, in this transaction too).
do $$
declare f regprocedure;
begin
    for f in select p.oid::regprocedure from pg_proc p
             where p.pronamespace = 'pyembed'::regnamespace
               and p.xmin <> pg_current_xact_id()::xid
    loop
        raise notice 'dropping %: no function file defines it any more', f;
        execute format('drop function %s cascade', f);
    end loop;
end $$;
