-- The filter grammar of search, recommendations and popularity: a jsonb object turned into a
-- SQL condition over `pyembed.items i` that reads every value from the bound $1. Idempotent.
-- Only whitelisted column names, operators and JSON paths become SQL text (docs/search.md).

-- Signatures of earlier releases (no path argument): an upgraded database must not keep them,
-- or a two-argument call of filter_condition would be ambiguous.
drop function if exists pyembed.filter_range(text, jsonb);
drop function if exists pyembed.filter_condition(text, jsonb);

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

-- Raises PE010 unless `value` is a JSON array whose elements all have type `element` ('string',
-- 'number' or 'integer'). An empty array is allowed: `in` then matches nothing, `not_in` everything.
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
    if element = 'number' and exists (
            select from jsonb_array_elements(value) e where jsonb_typeof(e) <> 'number') then
        raise exception 'filter % %: every element must be a number', key, op
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

-- Typed reads of one attribute (items.attributes ->> key): the value when the JSON value has
-- that type, else null (so a row whose attribute is missing or of another type never matches).
-- Plain SQL functions: the planner inlines them, so an expression index on the same call
-- (pyembed.create_attribute_index) matches the filter and gives the planner its statistics.
create or replace function pyembed.attribute_number(attributes jsonb, key text) returns numeric
language sql immutable parallel safe security invoker
as $$
    select case when pg_catalog.jsonb_typeof(attributes -> key) = 'number'
                then (attributes ->> key)::numeric end
$$;

create or replace function pyembed.attribute_text(attributes jsonb, key text) returns text
language sql immutable parallel safe security invoker
as $$
    select case when pg_catalog.jsonb_typeof(attributes -> key) = 'string'
                then attributes ->> key end
$$;

create or replace function pyembed.attribute_boolean(attributes jsonb, key text) returns boolean
language sql immutable parallel safe security invoker
as $$
    select case when pg_catalog.jsonb_typeof(attributes -> key) = 'boolean'
                then (attributes ->> key)::boolean end
$$;

-- Timestamps are ISO 8601 strings ('2024-05-01', '2024-05-01T10:00:00Z'); other strings read as
-- null. Stable, not immutable: a timestamp without an offset depends on the session's TimeZone,
-- so this one cannot back an index (index a number of epoch seconds instead).
create or replace function pyembed.attribute_timestamp(attributes jsonb, key text)
returns timestamptz
language sql stable parallel safe security invoker
as $$
    select case when pg_catalog.jsonb_typeof(attributes -> key) = 'string'
                 and (attributes ->> key) operator(pg_catalog.~)
                     '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$'
                then (attributes ->> key)::timestamptz end
$$;

create or replace function pyembed.jsonb_numeric_array(value jsonb) returns numeric[]
language sql immutable strict security invoker parallel safe
set search_path to pg_catalog, pg_temp
as $$
    select coalesce(array_agg(x::numeric order by o), '{}') from jsonb_array_elements_text(value)
        with ordinality as t(x, o)
$$;

-- A JSON path into the filters object as the text of a SQL literal: '{not,attributes.age,gte}'.
-- Every element is a whitelisted key, a validated attribute key or an operator name.
create or replace function pyembed.filter_path(path text[], variadic more text[] default '{}')
returns text
language sql immutable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select quote_literal((path || more)::text)
$$;

-- The SQL type a scalar of `kind` compares as, and the expression reading it from $1 at `at`.
create or replace function pyembed.filter_value(kind text, at text) returns text
language sql immutable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select case kind
        when 'number' then format('($1 #>> %s)::numeric', at)
        when 'boolean' then format('($1 #>> %s)::boolean', at)
        when 'timestamp' then format('($1 #>> %s)::timestamptz', at)
        else format('($1 #>> %s)', at) end
$$;

-- Raises PE010 unless `value` is a JSON scalar usable as a `kind` (number, text, boolean,
-- timestamp) operand of filter `name`.
create or replace function pyembed.filter_check_scalar(name text, op text, value jsonb, kind text)
returns void
language plpgsql immutable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    got text := coalesce(jsonb_typeof(value), 'nothing');
    wanted text := case kind when 'text' then 'string' when 'timestamp' then 'string' else kind end;
begin
    if got <> wanted then
        raise exception 'filter % %: expected a %, got %', name, op,
            case kind when 'timestamp' then 'timestamp string' else kind end, got
            using errcode = 'PE010';
    end if;
    if kind = 'timestamp' then
        begin
            perform (value #>> '{}')::timestamptz;
        exception when others then
            raise exception 'filter % %: not a timestamp: %', name, op,
                quote_literal(value #>> '{}') using errcode = 'PE010';
        end;
    end if;
end
$$;

-- One range condition (gt/gte/lt/lte/eq) on a whitelisted ordered column.
create or replace function pyembed.filter_range(key text, spec jsonb, path text[]) returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    op text;
    parts text[] := '{}';
    kind text := case key when 'price' then 'number' else 'timestamp' end;
begin
    if jsonb_typeof(spec) is distinct from 'object' or spec = '{}' then
        raise exception 'filter %: expected an object like {"gte": ..., "lt": ...}', key
            using errcode = 'PE010';
    end if;
    for op in select jsonb_object_keys(spec) loop
        if op not in ('gt', 'gte', 'lt', 'lte', 'eq') then
            raise exception 'filter %: unknown operator % (allowed: gt, gte, lt, lte, eq)',
                key, quote_literal(op) using errcode = 'PE010';
        end if;
        perform pyembed.filter_check_scalar(key, op, spec -> op, kind);
        parts := parts || format('i.%I %s %s', key, pyembed.filter_operator(op),
                                 pyembed.filter_value(kind, pyembed.filter_path(path, key, op)));
    end loop;
    return array_to_string(parts, ' and ');
end
$$;

create or replace function pyembed.filter_operator(op text) returns text
language sql immutable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select case op when 'gt' then '>' when 'gte' then '>=' when 'lt' then '<' when 'lte' then '<='
                   when 'ne' then '<>' else '=' end
$$;

-- Conditions on one attribute key, `{"attributes.<name>": spec}`:
--   a scalar (string, number, boolean)     equality, by JSON containment (GIN index)
--   {"eq": v} {"ne": v}                    typed (in)equality
--   {"gt"|"gte"|"lt"|"lte": v}             typed range
--   {"in": [v, ...]} {"not_in": [...]}     typed membership
--   {"type": "number"|"text"|"boolean"|"timestamp", ...}  the type, else the operands' JSON type
-- A row whose attribute is missing or of another type matches none of them (ne and not_in too).
-- `at`: the path of `spec` in $1.
create or replace function pyembed.filter_attribute(key text, spec jsonb, at text[])
returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    label text := 'attributes.' || key;
    kind text;
    op text;
    operand jsonb;
    reader text;
    parts text[] := '{}';
    ops text[] := array['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'not_in'];
begin
    if key !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' then
        raise exception 'filter %: attribute keys are letters, digits and _ (at most 63)',
            quote_literal(label) using errcode = 'PE010';
    end if;
    if jsonb_typeof(spec) in ('string', 'number', 'boolean') then
        return format('i.attributes @> jsonb_build_object(%L, $1 #> %s)', key,
                      pyembed.filter_path(at));
    end if;
    if jsonb_typeof(spec) is distinct from 'object' or spec - 'type' = '{}' then
        raise exception 'filter %: expected a value or an object of operators (%)', label,
            array_to_string(ops, ', ') using errcode = 'PE010';
    end if;
    for op in select jsonb_object_keys(spec - 'type') loop
        if op <> all (ops) then
            raise exception 'filter %: unknown operator % (allowed: %)', label,
                quote_literal(op), array_to_string(ops, ', ') using errcode = 'PE010';
        end if;
    end loop;
    kind := spec ->> 'type';
    if kind is null then
        -- The operands' JSON type: every operand (and array element) must agree.
        select case min(t) when 'string' then 'text' else min(t) end, count(distinct t)
        into kind, operand
        from (select jsonb_typeof(x) as t
              from jsonb_each(spec) e(op, v),
                   lateral jsonb_array_elements(case when jsonb_typeof(v) = 'array' then v
                                                     else jsonb_build_array(v) end) x) s;
        if (operand #>> '{}')::integer > 1 then
            raise exception 'filter %: operands of different types; add "type"', label
                using errcode = 'PE010';
        end if;
    end if;
    if kind is null or kind not in ('number', 'text', 'boolean', 'timestamp') then
        raise exception 'filter % type: expected number, text, boolean or timestamp, got %',
            label, coalesce(quote_literal(kind), 'nothing') using errcode = 'PE010';
    end if;
    reader := format('pyembed.attribute_%s(i.attributes, %L)', kind, key);
    for op in select jsonb_object_keys(spec - 'type') loop
        operand := spec -> op;
        if op in ('in', 'not_in') then
            perform pyembed.filter_check_array(label, op, operand,
                case kind when 'number' then 'number' else 'string' end);
            if kind in ('boolean', 'timestamp') then
                raise exception 'filter % %: not for % attributes (use eq / ranges)', label, op,
                    kind using errcode = 'PE010';
            end if;
            parts := parts || format('%s%s = any (pyembed.jsonb_%s_array($1 #> %s))',
                case op when 'not_in' then 'not ' else '' end, reader,
                case kind when 'number' then 'numeric' else 'text' end,
                pyembed.filter_path(at, op));
        else
            perform pyembed.filter_check_scalar(label, op, operand, kind);
            if kind = 'boolean' and op not in ('eq', 'ne') then
                raise exception 'filter % %: booleans take eq or ne', label, op
                    using errcode = 'PE010';
            end if;
            parts := parts || format('%s %s %s', reader, pyembed.filter_operator(op),
                pyembed.filter_value(kind, pyembed.filter_path(at, op)));
        end if;
    end loop;
    return array_to_string(parts, ' and ');
end
$$;

-- `{"attributes": {...}}`: JSON containment of the object (GIN jsonb_path_ops index), except
-- that a value which is an object of operators (`{"len": {"gte": 60}}`) is the condition
-- `{"attributes.len": {"gte": 60}}` (it used to be taken as a literal object to contain, which
-- matched nothing without saying so). An object mixing operator and other keys is an error.
create or replace function pyembed.filter_attributes(spec jsonb, path text[]) returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    key text;
    value jsonb;
    operators text[] := array['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'not_in', 'type'];
    literal jsonb := '{}';
    parts text[] := '{}';
    n_ops integer;
    n_keys integer;
begin
    if jsonb_typeof(spec) is distinct from 'object' then
        raise exception 'filter attributes: expected an object (JSON containment), got %',
            coalesce(jsonb_typeof(spec), 'nothing') using errcode = 'PE010';
    end if;
    for key, value in select * from jsonb_each(spec) loop
        if jsonb_typeof(value) = 'object' and value <> '{}' then
            select count(*) filter (where k = any (operators)), count(*) into n_ops, n_keys
            from jsonb_object_keys(value) k;
            if n_ops = n_keys then
                parts := parts || pyembed.filter_attribute(
                    key, value, path || array['attributes', key]);
                continue;
            elsif n_ops > 0 then
                raise exception 'filter attributes %: mixes operators and keys; write '
                    '{"attributes.%": {"gte": ...}} for a condition', quote_literal(key), key
                    using errcode = 'PE010';
            end if;
        end if;
        literal := literal || jsonb_build_object(key, value);
    end loop;
    if literal <> '{}' or parts = '{}' then
        if literal = spec then
            parts := parts || format('i.attributes @> ($1 #> %s)',
                                     pyembed.filter_path(path, 'attributes'));
        else  -- only the literal part: contain those keys of the object
            parts := parts || format('i.attributes @> (($1 #> %s) - %L::text[])',
                pyembed.filter_path(path, 'attributes'),
                (select array_agg(k) from jsonb_object_keys(spec) k
                 where not literal ? k)::text);
        end if;
    end if;
    return array_to_string(parts, ' and ');
end
$$;

-- The condition of one filter key; values are read from $1 (the whole filters object) at
-- `path` (the keys leading to this one: '{}' at the top, '{not}' inside a "not").
create or replace function pyembed.filter_condition(key text, spec jsonb, path text[] default '{}')
returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    op text;
    kind text := jsonb_typeof(spec);
begin
    if key like 'attributes.%' then
        return pyembed.filter_attribute(substr(key, length('attributes.') + 1), spec, path || key);
    end if;
    case key
    when 'category', 'external_id' then
        if kind = 'string' then
            return format('i.%I = ($1 #>> %s)', key, pyembed.filter_path(path, key));
        end if;
        if kind = 'object' and (select count(*) from jsonb_object_keys(spec)) = 1 then
            op := (select jsonb_object_keys(spec));
            if op = 'eq' and jsonb_typeof(spec->'eq') = 'string' then
                return format('i.%I = ($1 #>> %s)', key, pyembed.filter_path(path, key, 'eq'));
            elsif op in ('in', 'not_in') then
                perform pyembed.filter_check_array(key, op, spec->op, 'string');
                return format('%si.%I = any (pyembed.jsonb_text_array($1 #> %s))',
                              case op when 'not_in' then 'not ' else '' end, key,
                              pyembed.filter_path(path, key, op));
            end if;
        end if;
        raise exception 'filter %: expected a string or {"in": [strings]} / {"not_in": [...]}',
            key using errcode = 'PE010';
    when 'price', 'created_at' then
        return pyembed.filter_range(key, spec, path);
    when 'tags' then
        if kind = 'array' then
            perform pyembed.filter_check_array(key, 'contains', spec, 'string');
            return format('i.tags @> pyembed.jsonb_text_array($1 #> %s)',
                          pyembed.filter_path(path, key));
        end if;
        if kind = 'object' and (select count(*) from jsonb_object_keys(spec)) = 1 then
            op := (select jsonb_object_keys(spec));
            if op in ('contains', 'overlaps') then
                perform pyembed.filter_check_array(key, op, spec->op, 'string');
                return format('i.tags %s pyembed.jsonb_text_array($1 #> %s)',
                              case op when 'contains' then '@>' else '&&' end,
                              pyembed.filter_path(path, key, op));
            end if;
        end if;
        raise exception 'filter tags: expected {"contains": [strings]} or {"overlaps": [strings]}'
            using errcode = 'PE010';
    when 'attributes' then
        return pyembed.filter_attributes(spec, path);
    when 'item_id' then
        if kind = 'object' and (select count(*) from jsonb_object_keys(spec)) = 1 then
            op := (select jsonb_object_keys(spec));
            if op in ('in', 'not_in') then
                perform pyembed.filter_check_array(key, op, spec->op, 'integer');
                return format('%si.item_id = any (pyembed.jsonb_bigint_array($1 #> %s))',
                              case op when 'not_in' then 'not ' else '' end,
                              pyembed.filter_path(path, key, op));
            end if;
        end if;
        raise exception 'filter item_id: expected {"in": [ids]} or {"not_in": [ids]}'
            using errcode = 'PE010';
    when 'not' then
        if kind is distinct from 'object' or spec = '{}' then
            raise exception 'filter not: expected a non-empty filters object' using errcode = 'PE010';
        end if;
        -- `is not true`: a row whose attribute is missing (null) passes the negation.
        return format('(%s) is not true', pyembed.filter_node(spec, path || key));
    else
        raise exception 'unknown filter key % (allowed: category, price, created_at, tags, '
            'attributes, attributes.<key>, item_id, external_id, not)', quote_literal(key)
            using errcode = 'PE010';
    end case;
end
$$;

-- The keys of one filters object (at `path` in $1), ANDed.
create or replace function pyembed.filter_node(filters jsonb, path text[]) returns text
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    key text;
    parts text[] := '{}';
begin
    if jsonb_typeof(filters) is distinct from 'object' then
        raise exception 'filters must be a JSON object, got %',
            coalesce(jsonb_typeof(filters), 'nothing') using errcode = 'PE010';
    end if;
    for key in select jsonb_object_keys(filters) loop
        parts := parts || ('(' || pyembed.filter_condition(key, filters->key, path) || ')');
    end loop;
    return array_to_string(parts, ' and ');
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
begin
    if filters is null or filters = '{}'::jsonb then
        return 'true';
    end if;
    return pyembed.filter_node(filters, '{}');
end
$$;

-- An expression index for filters on one attribute key, so ranges and IN use an index and the
-- planner has statistics for them (the strategy's row estimate). `kind`: number, text or
-- boolean (timestamps: store epoch seconds as numbers). Returns the index name.
--   select pyembed.create_attribute_index('age', 'number');  -- then: analyze pyembed.items
create or replace function pyembed.create_attribute_index(key text, kind text default 'number')
returns text
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    index_name text := format('items_attribute_%s_%s', key, kind);
begin
    if key !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' then
        raise exception 'attribute keys are letters, digits and _ (at most 63), got %',
            quote_literal(key) using errcode = 'PE010';
    end if;
    if kind is null or kind not in ('number', 'text', 'boolean') then
        raise exception 'kind must be number, text or boolean, got %',
            coalesce(quote_literal(kind), 'null') using errcode = 'PE012';
    end if;
    index_name := left(index_name, 63);
    execute format('create index if not exists %I on pyembed.items '
                   '((pyembed.attribute_%s(attributes, %L)))', index_name, kind, key);
    return index_name;
end
$$;
