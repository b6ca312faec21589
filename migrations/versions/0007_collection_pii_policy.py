"""Per-collection personal-data policy (issue 20): ``all`` scrubs every type kb finds (the default,
what every collection did before), ``identifiers`` scrubs identifiers only (ID and card numbers,
phones, e-mail...) and keeps names and addresses, for public documents (regulations, reports,
encyclopedias) whose answers are often a name or a place.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("pii", sa.String(16), nullable=False, server_default="all"))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("pii")
