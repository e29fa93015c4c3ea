"""pyembed.installation: the checksum of the function files a database runs.

Revision ID: 0003
Revises: 0002
"""

from pyembed_db.migrations.helpers import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
destroys_data = False


def upgrade() -> None:
    run_sql_file("schema/0003_installation.up.sql")


def downgrade() -> None:
    run_sql_file("schema/0003_installation.down.sql")
