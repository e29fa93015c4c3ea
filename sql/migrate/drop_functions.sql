-- Drop every function of schema pyembed (their triggers go with them): after a downgrade the
-- database no longer matches this package's function files.
do $$
declare f regprocedure;
begin
    for f in select p.oid::regprocedure from pg_proc p
             join pg_namespace n on n.oid = p.pronamespace
             where n.nspname = 'pyembed'
    loop
        execute format('drop function if exists %s cascade', f);
    end loop;
end $$;
