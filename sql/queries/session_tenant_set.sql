-- Give a new session the tenant setting of the session it works for (a bound role ignores it).
select set_config('pyembed.tenant_id', coalesce(%(tenant)s, ''), false)
