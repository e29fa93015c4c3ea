-- Back to the session setting alone; the bindings are dropped (0006 destroys_data).
alter policy tenant_rows on pyembed.users
    using (tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), ''));
alter policy tenant_rows on pyembed.items
    using (tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), ''));
alter policy tenant_rows on pyembed.events
    using (tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), ''));
drop table pyembed.tenant_roles;
