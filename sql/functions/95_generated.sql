-- Regenerate the per-index search functions (pyembed.create_search_function) from the template
-- of this release, so a change to the template reaches databases with existing indexes too.
-- Runs after every other function file.
do $$
declare
    m record;
begin
    for m in
        select em.model_id from pyembed.embedding_models em
        where to_regclass(format('pyembed.%I', pyembed.model_index_name(
                  em.model_id, coalesce(em.config->>'index_storage', 'vector')))) is not null
    loop
        perform pyembed.create_search_function(m.model_id);
    end loop;
end
$$;
