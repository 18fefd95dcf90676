"""The run history: every finished run recorded in a SQL database (SQLite by default, PostgreSQL
for a team) through SQLAlchemy — its axes with intervals, raw metrics, provenance and per-image
verdicts — so `compare` and `history` can answer from run ids long after the folders changed."""

from .database import HISTORY_SCHEMA_VERSION, HistoryDatabase, default_url, open_history
from .records import record_run

__all__ = ["HISTORY_SCHEMA_VERSION", "HistoryDatabase", "default_url", "open_history", "record_run"]
