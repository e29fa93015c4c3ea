"""Events' references to users, items and event types checked per statement, not per row.

Revision ID: 0005
Revises: 0004
"""

from pyembed_db.migrations.helpers import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
destroys_data = False


def upgrade() -> None:
    run_sql_file("schema/0005_load.up.sql")


def downgrade() -> None:
    run_sql_file("schema/0005_load.down.sql")
