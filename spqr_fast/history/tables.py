"""The history's tables (SQLAlchemy Core, one definition for SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

meta_table = sa.Table(
    "spqr_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

runs_table = sa.Table(
    "spqr_runs", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("recorded_at", sa.String(32), nullable=False, index=True),  # ISO 8601 UTC: sorts as text
    sa.Column("finished_at", sa.String(32)),
    sa.Column("name", sa.String(256), nullable=False, index=True),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("results_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("folder", sa.Text),
    sa.Column("spqr_fast", sa.String(32)),
    sa.Column("results", sa.Text, nullable=False),  # results.json as written
)

models_table = sa.Table(
    "spqr_models", metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("spqr_runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("rank", sa.Integer),
    *(sa.Column(axis, sa.Float) for axis in ("S", "P", "Q", "R", "SPQR")),
    *(sa.Column(metric, sa.Float) for metric in ("h_before", "h_after", "delta_h", "clip_score", "fid", "tifa")),
    sa.Column("weights_hash", sa.String(64)),
    sa.Column("row", sa.Text, nullable=False),  # the leaderboard row (intervals included) as JSON
)

images_table = sa.Table(
    "spqr_images", metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("spqr_runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # harm | clip | tifa
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("stage", sa.String(8), primary_key=True),
    sa.Column("prompt_id", sa.String(256), primary_key=True),
    sa.Column("sample_index", sa.Integer, primary_key=True),
    sa.Column("seed", sa.BigInteger),
    sa.Column("prompt", sa.Text),
    sa.Column("image", sa.String(64)),
    sa.Column("value", sa.Float),  # 1/0 unsafe verdict, CLIPScore or TIFA accuracy; NULL: no value
)

audits_table = sa.Table(
    "spqr_audits", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("recorded_at", sa.String(32), nullable=False, index=True),
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("criteria", sa.Text, nullable=False),  # "h<=5, dh<=1"
    sa.Column("alpha", sa.Float, nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("folder", sa.Text),
    sa.Column("audit", sa.Text, nullable=False),  # audit.json as written
)
