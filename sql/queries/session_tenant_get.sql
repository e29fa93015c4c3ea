-- The session's pyembed.tenant_id (unbound mode), for the extra sessions of a parallel refresh.
select current_setting('pyembed.tenant_id', true)
