"""Behavior models: embedding_models.kind, one active model per kind, pyembed.behavior_models.

Revision ID: 0004
Revises: 0003
"""

from pyembed_db.migrations.helpers import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
# Its downgrade deletes the trained behavior models and their vectors.
destroys_data = True


def upgrade() -> None:
    run_sql_file("schema/0004_behavior.up.sql")


def downgrade() -> None:
    run_sql_file("schema/0004_behavior.down.sql")
