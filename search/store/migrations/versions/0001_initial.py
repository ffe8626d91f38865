"""poolstride tables: jobs (the queue), workers, candidates, stages, epochs

Revision ID: 0001
Revises:
Create Date: 2026-11-26 12:17:17
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ps_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("study_name", sa.String(length=200), nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", _UTC, nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("started_at", _UTC, nullable=True),
        sa.Column("finished_at", _UTC, nullable=True),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_ps_jobs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ps_jobs")),
        sa.UniqueConstraint("study_name", name=op.f("uq_ps_jobs_study_name")),
    )
    op.create_index(
        "ix_ps_jobs_claim", "ps_jobs", ["status", sa.literal_column("priority DESC"), "created_at"]
    )

    op.create_table(
        "ps_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("optuna_trial_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("arch_json", sa.Text(), nullable=False),
        sa.Column("arch_hash", sa.String(length=16), nullable=False),
        sa.Column("val_acc", sa.Float(), nullable=True),
        sa.Column("test_acc", sa.Float(), nullable=True),
        sa.Column("flops", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("activation_bytes", sa.BigInteger(), nullable=False),
        sa.Column("receptive_field", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("train_s", sa.Float(), nullable=True),
        sa.Column("epochs_done", sa.Integer(), nullable=False),
        sa.Column("epochs_total", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _UTC, nullable=False),
        sa.Column("finished_at", _UTC, nullable=True),
        sa.CheckConstraint(
            "state IN ('running', 'complete', 'pruned', 'failed')",
            name=op.f("ck_ps_candidates_state"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["ps_jobs.id"],
            ondelete="CASCADE",
            name=op.f("fk_ps_candidates_job_id_ps_jobs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ps_candidates")),
        sa.UniqueConstraint(
            "job_id", "trial_number", name=op.f("uq_ps_candidates_job_id_trial_number")
        ),
    )
    op.create_index("ix_ps_candidates_arch_hash", "ps_candidates", ["arch_hash"])
    op.create_index("ix_ps_candidates_job_id_state", "ps_candidates", ["job_id", "state"])
    op.create_index("ix_ps_candidates_optuna_trial_id", "ps_candidates", ["optuna_trial_id"])

    op.create_table(
        "ps_workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_job_id", sa.Integer(), nullable=True),
        sa.Column("started_at", _UTC, nullable=False),
        sa.Column("last_heartbeat", _UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["current_job_id"],
            ["ps_jobs.id"],
            ondelete="SET NULL",
            name=op.f("fk_ps_workers_current_job_id_ps_jobs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ps_workers")),
    )

    op.create_table(
        "ps_epochs",
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("val_acc", sa.Float(), nullable=True),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["ps_candidates.id"],
            ondelete="CASCADE",
            name=op.f("fk_ps_epochs_candidate_id_ps_candidates"),
        ),
        sa.PrimaryKeyConstraint("candidate_id", "epoch", name=op.f("pk_ps_epochs")),
    )

    op.create_table(
        "ps_stages",
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("downsample", sa.String(length=16), nullable=False),
        sa.Column("kernel", sa.Integer(), nullable=False),
        sa.Column("skip", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["ps_candidates.id"],
            ondelete="CASCADE",
            name=op.f("fk_ps_stages_candidate_id_ps_candidates"),
        ),
        sa.PrimaryKeyConstraint("candidate_id", "stage", name=op.f("pk_ps_stages")),
    )
    op.create_index("ix_ps_stages_stage_downsample", "ps_stages", ["stage", "downsample"])
    op.create_index("ix_ps_stages_stage_kernel", "ps_stages", ["stage", "kernel"])
    op.create_index("ix_ps_stages_stage_skip", "ps_stages", ["stage", "skip"])


def downgrade() -> None:
    # Children first; dropping a table drops its indexes.
    for table in ("ps_stages", "ps_epochs", "ps_workers", "ps_candidates", "ps_jobs"):
        op.drop_table(table)
