"""Base tables: users, items, events, models, vectors, change queues.

Revision ID: 0001
Revises:
"""

from pyembed_db.migrations.helpers import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
# Its downgrade drops schema pyembed with every row: `migrate --down` refuses without --force.
destroys_data = True


def upgrade() -> None:
    run_sql_file("schema/0001_base.up.sql")


def downgrade() -> None:
    run_sql_file("schema/0001_base.down.sql")
