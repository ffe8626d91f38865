"""ps_candidates.phase, replicate, reference, cached_from, cache_key; ps_jobs.plan

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PHASES = "phase IN ('search', 'confirm', 'ablate')"
_FK = "fk_ps_candidates_cached_from_ps_candidates"
_CHECK = "ck_ps_candidates_phase"


def upgrade() -> None:
    op.add_column("ps_jobs", sa.Column("plan", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a CHECK or a REFERENCES only inside the column's own definition; Alembic
        # would copy the table for it (batch mode), and with foreign keys on, dropping the old
        # ps_candidates would delete every stage and epoch row
        op.execute(
            "ALTER TABLE ps_candidates ADD COLUMN phase VARCHAR(16) DEFAULT 'search' NOT NULL "
            f"CONSTRAINT {_CHECK} CHECK ({_PHASES})"
        )
        op.execute(
            f"ALTER TABLE ps_candidates ADD COLUMN cached_from INTEGER CONSTRAINT {_FK} "
            "REFERENCES ps_candidates (id)"
        )
    else:
        op.add_column(
            "ps_candidates",
            sa.Column("phase", sa.String(length=16), server_default="search", nullable=False),
        )
        op.create_check_constraint(_CHECK, "ps_candidates", _PHASES)
        op.add_column("ps_candidates", sa.Column("cached_from", sa.Integer(), nullable=True))
        op.create_foreign_key(_FK, "ps_candidates", "ps_candidates", ["cached_from"], ["id"])
    op.add_column(
        "ps_candidates",
        sa.Column("replicate", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("ps_candidates", sa.Column("reference", sa.Integer(), nullable=True))
    op.add_column("ps_candidates", sa.Column("cache_key", sa.String(length=64), nullable=True))
    op.create_index("ix_ps_candidates_cache_key", "ps_candidates", ["cache_key"])


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place, not a batch copy (see 0002); SQLite refuses to drop
    # an indexed column, so the index goes first
    op.drop_index("ix_ps_candidates_cache_key", table_name="ps_candidates")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(_FK, "ps_candidates", type_="foreignkey")
        op.drop_constraint(_CHECK, "ps_candidates", type_="check")
    for column in ("cache_key", "reference", "replicate", "cached_from", "phase"):
        op.drop_column("ps_candidates", column)
    op.drop_column("ps_jobs", "plan")
