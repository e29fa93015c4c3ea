-- pyembed_db.search.explain_search: the plan of one search, after running it.
select pyembed.explain_search(%(query)s, %(k)s, %(filters)s::jsonb, %(exclude_user)s::bigint,
                              %(model_id)s::integer)
