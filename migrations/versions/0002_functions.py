"""Formerly: apply the SQL functions. Kept so databases stamped 0002 keep their place.

Function files are now re-applied after every upgrade that ends at head (env.py) and dropped
after any downgrade, so this revision changes nothing.

Revision ID: 0002
Revises: 0001
"""

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
destroys_data = False


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
