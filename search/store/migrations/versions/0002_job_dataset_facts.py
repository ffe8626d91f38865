"""ps_jobs.dataset_facts: what a worker learnt about the job's dataset (JSON)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ps_jobs", sa.Column("dataset_facts", sa.Text(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), not a batch copy: the copy drops and
    # recreates ps_jobs, and with foreign keys on, dropping it deletes every candidate.
    op.drop_column("ps_jobs", "dataset_facts")
