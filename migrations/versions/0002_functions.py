"""SQL functions and triggers (sql/functions/*.sql).

Revision ID: 0002
Revises: 0001
"""

from pyembed_db.migrations.helpers import apply_functions, drop_functions

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_functions()


def downgrade() -> None:
    drop_functions()
