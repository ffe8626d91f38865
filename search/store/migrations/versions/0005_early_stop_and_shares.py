"""ps_candidates.latency_rel, gpu_share, stopped_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("latency_rel", sa.Float()),
    ("gpu_share", sa.Float()),
    ("stopped_at", sa.Integer()),
)


def upgrade() -> None:
    for name, type_ in _COLUMNS:
        op.add_column("ps_candidates", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place, not a batch copy (see 0002)
    for name, _ in reversed(_COLUMNS):
        op.drop_column("ps_candidates", name)
