-- Least-privilege group roles (NOLOGIN; grant them to your login roles):
--   pyembed_reader  search and recommend: SELECT on the tables, EXECUTE on read-only functions
--   pyembed_writer  reader + load users, items, events (the triggers queue work as this role)
--   pyembed_worker  writer + embed items, refresh users, drain the queues
-- The roles are cluster-wide and created by the first revision (sql/schema/0001_base.up.sql);
-- every grant of the schema is here, per database, re-applied after every upgrade, after the
-- function files (migrations/helpers.py: apply_functions).

grant pyembed_reader to pyembed_writer;
grant pyembed_writer to pyembed_worker;

grant usage on schema pyembed to pyembed_reader;
grant select on all tables in schema pyembed to pyembed_reader;

grant insert, update, delete on pyembed.users, pyembed.items, pyembed.events to pyembed_writer;
grant insert, update on pyembed.item_queue, pyembed.user_queue to pyembed_writer;
grant usage on all sequences in schema pyembed to pyembed_writer;

grant insert, update, delete on all tables in schema pyembed to pyembed_worker;
-- Role bindings decide tenancy (revision 0006): administrators only.
revoke insert, update, delete on pyembed.tenant_roles from pyembed_worker;

-- Functions: nobody but the owner by default; read-only ones to readers, the rest to workers.
do $$
declare
    fn record;
    read_only text[] := array[
        'active_model_id', 'status', 'current_tenant', 'item_vector', 'embedding_coverage',
        'resolve_model', 'user_id', 'item_ids', 'filter_sql', 'search', 'search_similar', 'search_text',
        'search_plan', 'explain_search', 'recommend', 'popular_items', 'event_weight',
        -- helpers of the search functions (sql/functions/20_search.sql)
        'jsonb_text_array', 'jsonb_bigint_array', 'filter_check_array', 'filter_range',
        'filter_condition', 'search_setting', 'search_sql', 'search_execute', 'search_run_hnsw',
        'user_item_ids', 'model_index_name', 'search_function_name',
        -- helpers of recommend and popular_items (sql/functions/40_recommend.sql)
        'setting', 'setting_interval', 'setting_number', 'rule_weight', 'decay',
        'popularity_scores', 'scale', 'rocchio', 'items_mean', 'mmr', 'rank_candidates',
        'recommend_behavior', 'popularity_half_life',
        -- filter grammar and search checks (15_filters.sql, 20_search.sql)
        'check_search_args', 'search_costs', 'filter_path', 'filter_value', 'filter_operator',
        'filter_check_scalar', 'filter_attribute', 'filter_attributes', 'filter_node',
        'attribute_number', 'attribute_text', 'attribute_boolean', 'attribute_timestamp',
        'jsonb_numeric_array', 'search_unfiltered', 'model_ef_search',
        -- the item text columns (00_core.sql): the items trigger runs them as the writer
        'item_text_columns', 'item_text_source'
    ];
begin
    for fn in
        select p.oid::regprocedure as signature, p.proname
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'pyembed' and p.prokind = 'f'
    loop
        execute format('revoke execute on function %s from public', fn.signature);
        execute format('grant execute on function %s to %I', fn.signature,
                       case when fn.proname = any (read_only) then 'pyembed_reader'
                            else 'pyembed_worker' end);
        -- Tenant bindings alter roles: administrators only.
        if fn.proname in ('bind_tenant', 'unbind_tenant', 'default_role_setting') then
            execute format('revoke execute on function %s from pyembed_worker', fn.signature);
        end if;
    end loop;
end
$$;
