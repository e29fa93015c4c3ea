"""Tenants bound to roles (pyembed.tenant_roles): a bound role cannot switch tenants.

Revision ID: 0006
Revises: 0005
"""

from pyembed_db.migrations.helpers import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
# Its downgrade drops the role bindings: bound roles would fall back to their session setting.
destroys_data = True


def upgrade() -> None:
    run_sql_file("schema/0006_tenant_roles.up.sql")


def downgrade() -> None:
    run_sql_file("schema/0006_tenant_roles.down.sql")
