"""Recording an eval that has just finished: where (the --history URL, the config's history.url,
or OUT/history.sqlite) and the one warning line when the database cannot take it — the results
are already in the folder, so nothing is lost and `history record` can add it later."""

from __future__ import annotations

from pathlib import Path

from ..config import EvalConfig
from ..errors import SpqrError
from .database import default_url, open_history, shown_url
from .records import record_audit, record_run


def history_target(cfg: EvalConfig, out_dir: Path, override: str | None) -> str | None:
    """The URL this run records into; None when the config turns recording off and no URL is given."""
    if override is not None:
        return override
    if not cfg.history.record:
        return None
    return cfg.history.url or default_url(out_dir)


def record_finished_eval(url: str, out_dir: Path) -> tuple[str | None, str | None]:
    """(run id, None) — or (None, the warning line) when recording failed."""
    return _record(url, lambda db: record_run(db, out_dir)[0], "run",
                   f"its results are in {out_dir}; record them later with `spqr-fast history record {out_dir} "
                   f"--history {shown_url(url)}`")


def record_finished_audit(url: str, record: dict, out_dir: Path) -> tuple[str | None, str | None]:
    """(audit id, None) — or (None, the warning line) when recording failed (audit.json is kept)."""
    return _record(url, lambda db: record_audit(db, record, out_dir), "audit",
                   f"its record is {out_dir / 'audit.json'}")


def _record(url: str, write, what: str, where: str) -> tuple[str | None, str | None]:
    try:
        db = open_history(url)
        try:
            return write(db), None
        finally:
            db.close()
    except (SpqrError, OSError) as err:
        reason = str(err)
    except Exception as err:  # noqa: BLE001 - any database failure: the outputs are safe in their folder
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return None, f"{what} not recorded in the history ({reason[:300]}) — {where}"
