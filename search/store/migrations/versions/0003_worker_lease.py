"""ps_workers.lease_seconds: the lease a worker runs with, so a silent one can be told lost

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ps_workers", sa.Column("lease_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place, not a batch copy (see 0002)
    op.drop_column("ps_workers", "lease_seconds")
