-- Tenants bound to roles. A role listed in pyembed.tenant_roles sees and writes only its
-- tenant's rows, whatever it sets pyembed.tenant_id to; other roles keep the session setting
-- (trusted clients only: any client can change its own setting). Bind and unbind with
-- pyembed.bind_tenant / pyembed.unbind_tenant (sql/functions/00_core.sql), as an administrator.
-- The policies hold the rule inline (no function): dropping the function files on a downgrade
-- must never drop a policy, and the subquery runs once per statement (an InitPlan).
create table pyembed.tenant_roles (
    role_name name primary key,
    tenant_id text not null check (tenant_id <> '')
);
alter table pyembed.tenant_roles enable row level security;
-- A role may read its own binding (the policies below read it as the querying role).
create policy own_binding on pyembed.tenant_roles using (role_name = current_user);

alter policy tenant_rows on pyembed.users
    using (tenant_id is not distinct from coalesce(
        (select b.tenant_id from pyembed.tenant_roles b where b.role_name = current_user),
        nullif(current_setting('pyembed.tenant_id', true), '')));
alter policy tenant_rows on pyembed.items
    using (tenant_id is not distinct from coalesce(
        (select b.tenant_id from pyembed.tenant_roles b where b.role_name = current_user),
        nullif(current_setting('pyembed.tenant_id', true), '')));
alter policy tenant_rows on pyembed.events
    using (tenant_id is not distinct from coalesce(
        (select b.tenant_id from pyembed.tenant_roles b where b.role_name = current_user),
        nullif(current_setting('pyembed.tenant_id', true), '')));
