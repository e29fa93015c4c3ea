-- The filter grammar of search, recommendations and popularity: a jsonb object turned into a
-- SQL condition over `pyembed.items i` that reads every value from the bound $1. Idempotent.
-- Only whitelisted column names, operators and JSON paths become SQL text (docs/search.md).

-- A jsonb array of strings as text[] (immutable, so the planner folds it into a constant).
create or replace function pyembed.jsonb_text_array(value jsonb) returns text[]
language sql immutable strict security invoker parallel safe
set search_path to pg_catalog, pg_temp
as $$
    select coalesce(array_agg(x order by o), '{}') from jsonb_array_elements_text(value)
        with ordinality as t(x, o)
$$;

create or replace function pyembed.jsonb_bigint_array(value jsonb) returns bigint[]
language sql immutable strict security invoker parallel safe
set search_path to pg_catalog, pg_temp
as $$
    select coalesce(array_agg(x::bigint order by o), '{}') from jsonb_array_elements_text(value)
        with ordinality as t(x, o)
$$;

-- Raises PE010 unless `value` is a JSON array whose elements all have type `element` ('string'
-- or 'integer'). An empty array is allowed: `in` then matches nothing, `not_in` everything.
create or replace function pyembed.filter_check_array(key text, op text, value jsonb, element text)
returns void
language plpgsql immutable security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    if jsonb_typeof(value) is distinct from 'array' then
        raise exception 'filter % %: expected a JSON array, got %', key, op,
            coalesce(jsonb_typeof(value), 'nothing') using errcode = 'PE010';
    end if;
    if element = 'string' and exists (
            select from jsonb_array_elements(value) e where jsonb_typeof(e) <> 'string') then
        raise exception 'filter % %: every element must be a string', key, op
            using errcode = 'PE010';
    end if;
    if element = 'integer' and exists (
            select from jsonb_array_elements(value) e
            where jsonb_typeof(e) <> 'number' or e::text !~ '^-?[0-9]{1,18}$') then
        raise exception 'filter % %: every element must be an integer id', key, op
            using errcode = 'PE010';
    end if;
end
$$;

-- One range condition (gt/gte/lt/lte/eq) on a whitelisted ordered column.
create or replace function pyembed.filter_range(key text, spec jsonb) returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    op text;
    parts text[] := '{}';
    cast_type text := case key when 'price' then 'numeric' else 'timestamptz' end;
begin
    if jsonb_typeof(spec) <> 'object' or spec = '{}' then
        raise exception 'filter %: expected an object like {"gte": ..., "lt": ...}', key
            using errcode = 'PE010';
    end if;
    for op in select jsonb_object_keys(spec) loop
        if op not in ('gt', 'gte', 'lt', 'lte', 'eq') then
            raise exception 'filter %: unknown operator % (allowed: gt, gte, lt, lte, eq)',
                key, quote_literal(op) using errcode = 'PE010';
        end if;
        if key = 'price' and jsonb_typeof(spec->op) <> 'number' then
            raise exception 'filter price %: expected a number, got %', op, jsonb_typeof(spec->op)
                using errcode = 'PE010';
        end if;
        if key = 'created_at' then
            if jsonb_typeof(spec->op) <> 'string' then
                raise exception 'filter created_at %: expected a timestamp string, got %', op,
                    jsonb_typeof(spec->op) using errcode = 'PE010';
            end if;
            begin
                perform (spec->>op)::timestamptz;
            exception when others then
                raise exception 'filter created_at %: not a timestamp: %', op,
                    quote_literal(spec->>op) using errcode = 'PE010';
            end;
        end if;
        parts := parts || format('i.%I %s ($1 #>> %L)::%s', key,
            case op when 'gt' then '>' when 'gte' then '>=' when 'lt' then '<'
                    when 'lte' then '<=' else '=' end,
            format('{%s,%s}', key, op), cast_type);
    end loop;
    return array_to_string(parts, ' and ');
end
$$;

-- The condition of one filter key; values are read from $1 (the whole filters object).
create or replace function pyembed.filter_condition(key text, spec jsonb) returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    op text;
    kind text := jsonb_typeof(spec);
begin
    case key
    when 'category', 'external_id' then
        if kind = 'string' then
            return format('i.%I = ($1 ->> %L)', key, key);
        end if;
        if kind = 'object' and (select count(*) from jsonb_object_keys(spec)) = 1 then
            op := (select jsonb_object_keys(spec));
            if op = 'eq' and jsonb_typeof(spec->'eq') = 'string' then
                return format('i.%I = ($1 #>> %L)', key, format('{%s,eq}', key));
            elsif op in ('in', 'not_in') then
                perform pyembed.filter_check_array(key, op, spec->op, 'string');
                return format('%si.%I = any (pyembed.jsonb_text_array($1 #> %L))',
                              case op when 'not_in' then 'not ' else '' end, key,
                              format('{%s,%s}', key, op));
            end if;
        end if;
        raise exception 'filter %: expected a string or {"in": [strings]} / {"not_in": [...]}',
            key using errcode = 'PE010';
    when 'price', 'created_at' then
        return pyembed.filter_range(key, spec);
    when 'tags' then
        if kind = 'array' then
            perform pyembed.filter_check_array(key, 'contains', spec, 'string');
            return 'i.tags @> pyembed.jsonb_text_array($1 -> ''tags'')';
        end if;
        if kind = 'object' and (select count(*) from jsonb_object_keys(spec)) = 1 then
            op := (select jsonb_object_keys(spec));
            if op in ('contains', 'overlaps') then
                perform pyembed.filter_check_array(key, op, spec->op, 'string');
                return format('i.tags %s pyembed.jsonb_text_array($1 #> %L)',
                              case op when 'contains' then '@>' else '&&' end,
                              format('{tags,%s}', op));
            end if;
        end if;
        raise exception 'filter tags: expected {"contains": [strings]} or {"overlaps": [strings]}'
            using errcode = 'PE010';
    when 'attributes' then
        if kind = 'object' then
            return 'i.attributes @> ($1 -> ''attributes'')';
        end if;
        raise exception 'filter attributes: expected an object (JSON containment), got %',
            coalesce(kind, 'nothing') using errcode = 'PE010';
    when 'item_id' then
        if kind = 'object' and (select count(*) from jsonb_object_keys(spec)) = 1 then
            op := (select jsonb_object_keys(spec));
            if op in ('in', 'not_in') then
                perform pyembed.filter_check_array(key, op, spec->op, 'integer');
                return format('%si.item_id = any (pyembed.jsonb_bigint_array($1 #> %L))',
                              case op when 'not_in' then 'not ' else '' end,
                              format('{item_id,%s}', op));
            end if;
        end if;
        raise exception 'filter item_id: expected {"in": [ids]} or {"not_in": [ids]}'
            using errcode = 'PE010';
    else
        raise exception 'unknown filter key % (allowed: category, price, created_at, tags, '
            'attributes, item_id, external_id)', quote_literal(key) using errcode = 'PE010';
    end case;
end
$$;

-- The filters object as a boolean SQL expression over `pyembed.items i` that reads every value
-- from $1 (the filters themselves): run it as
--   EXECUTE format('select ... from pyembed.items i where %s', pyembed.filter_sql(f)) USING f
-- Keys are ANDed. Unknown keys, wrong value types and unknown operators raise PE010.
create or replace function pyembed.filter_sql(filters jsonb) returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    key text;
    parts text[] := '{}';
begin
    if filters is null or filters = '{}'::jsonb then
        return 'true';
    end if;
    if jsonb_typeof(filters) <> 'object' then
        raise exception 'filters must be a JSON object, got %', jsonb_typeof(filters)
            using errcode = 'PE010';
    end if;
    for key in select jsonb_object_keys(filters) loop
        parts := parts || ('(' || pyembed.filter_condition(key, filters->key) || ')');
    end loop;
    return array_to_string(parts, ' and ');
end
$$;
