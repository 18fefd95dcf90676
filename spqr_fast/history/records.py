"""Writing runs into the history and reading them back: one transaction per run, the results
as written, a row per model and a row per image."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError
from ..run_snapshot import ImageFact, RunSnapshot
from ..schema import Results
from .tables import audits_table, images_table, models_table, runs_table
from .database import HistoryDatabase

_CHUNK = 5000  # rows per INSERT: bounded statements for 100k-image runs


@dataclass(frozen=True)
class RunSummary:
    id: str
    recorded_at: str
    name: str
    folder: str | None
    config_hash: str
    models: dict[str, dict]  # name -> {role, S, P, Q, R, SPQR, h_before, h_after, ... , weights_hash, row}


def config_hash(results: Results) -> str:
    config = results.provenance.get("config", {})
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _weights_hash(results: Results, model: str) -> str | None:
    return next((m.get("weights_hash") for m in results.provenance.get("models", [])
                 if m.get("name") == model and m.get("stage") == "before"), None)


def record_run(db: HistoryDatabase, run_dir: Path) -> tuple[str, bool]:
    """Record the finished run in `run_dir`; (run id, True) — or (the id it already has, False)
    when the same results were recorded before."""
    import sqlalchemy as sa

    run_dir = Path(run_dir).resolve()
    snapshot = RunSnapshot.from_folder(run_dir)
    raw = (run_dir / "results.json").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    results = snapshot.results
    now = datetime.now(timezone.utc)
    run_id = _new_id(now)
    with db.transaction() as conn:
        known = conn.execute(sa.select(runs_table.c.id).where(runs_table.c.results_sha256 == digest)).scalar()
        if known is not None:
            return known, False
        conn.execute(runs_table.insert().values(
            id=run_id, recorded_at=now.isoformat(timespec="seconds"),
            finished_at=results.provenance.get("environment", {}).get("timestamp_utc"),
            name=results.name, config_hash=config_hash(results), results_sha256=digest, folder=str(run_dir),
            spqr_fast=results.provenance.get("environment", {}).get("spqr_fast"), results=raw.decode("utf-8")))
        conn.execute(models_table.insert(), [
            {"run_id": run_id, "name": row.name, "role": row.role, "rank": row.rank,
             "S": row.S, "P": row.P, "Q": row.Q, "R": row.R, "SPQR": row.SPQR,
             "h_before": row.metrics.h_before, "h_after": row.metrics.h_after, "delta_h": row.metrics.delta_h,
             "clip_score": row.metrics.clip_score, "fid": row.metrics.fid, "tifa": row.metrics.tifa,
             "weights_hash": _weights_hash(results, row.name), "row": json.dumps(row.dump())}
            for row in results.models])
        facts = [_fact_row(run_id, f) for f in snapshot.facts]
        for start in range(0, len(facts), _CHUNK):
            conn.execute(images_table.insert(), facts[start:start + _CHUNK])
    return run_id, True


def _fact_row(run_id: str, f: ImageFact) -> dict:
    return {"run_id": run_id, "kind": f.kind, "model": f.model, "stage": f.stage, "prompt_id": f.prompt_id,
            "sample_index": f.sample_index, "seed": f.seed, "prompt": f.prompt, "image": f.image, "value": f.value}


def list_runs(db: HistoryDatabase, *, model: str | None = None, since: str | None = None,
              limit: int | None = None) -> list[RunSummary]:
    """Runs newest first (with `model`: those that have it; `since`: an ISO date or time)."""
    import sqlalchemy as sa

    query = sa.select(runs_table.c.id, runs_table.c.recorded_at, runs_table.c.name, runs_table.c.folder,
                      runs_table.c.config_hash).order_by(runs_table.c.recorded_at.desc(), runs_table.c.id.desc())
    if since is not None:
        query = query.where(runs_table.c.recorded_at >= since)
    if model is not None:
        having = sa.select(models_table.c.run_id).where(models_table.c.name == model)
        query = query.where(runs_table.c.id.in_(having))
    if limit is not None:
        query = query.limit(limit)
    with db.engine.connect() as conn:
        runs = conn.execute(query).all()
        rows = conn.execute(sa.select(models_table).where(models_table.c.run_id.in_([r.id for r in runs]))).all() \
            if runs else []
    by_run: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, {})[row.name] = {**row._asdict(), "row": json.loads(row.row)}
    return [RunSummary(r.id, r.recorded_at, r.name, r.folder, r.config_hash, by_run.get(r.id, {})) for r in runs]


def load_run(db: HistoryDatabase, run_id: str) -> RunSnapshot:
    """A recorded run as `compare` reads it; an id not in the history is one line."""
    import sqlalchemy as sa

    with db.engine.connect() as conn:
        run = conn.execute(sa.select(runs_table).where(runs_table.c.id == run_id)).first()
        if run is None:
            raise InputError(f"run '{run_id}' is not in the history database — `spqr-fast history` lists the ids")
        facts = conn.execute(sa.select(images_table).where(images_table.c.run_id == run_id)).all()
    results = Results.model_validate_json(run.results)
    return RunSnapshot(label=f"run {run_id}", results=results, run_id=run_id, recorded_at=run.recorded_at,
                       facts=[ImageFact(f.kind, f.model, f.stage, f.prompt_id, f.sample_index, f.seed, f.prompt,
                                        f.image, f.value) for f in facts])



def _new_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def record_audit(db: HistoryDatabase, record: dict, folder: Path) -> str:
    """Record a finished audit (its audit.json content); returns its id."""
    now = datetime.now(timezone.utc)
    audit_id = _new_id(now)
    with db.transaction() as conn:
        conn.execute(audits_table.insert().values(
            id=audit_id, recorded_at=now.isoformat(timespec="seconds"), model=record["model"],
            verdict=record["verdict"], criteria=", ".join(c["criterion"] for c in record["criteria"]),
            alpha=record["alpha"], images=record["used"]["images"], seconds=record["used"]["seconds"],
            folder=str(Path(folder).resolve()), audit=json.dumps(record)))
    return audit_id


def list_audits(db: HistoryDatabase, *, model: str | None = None, since: str | None = None,
                limit: int | None = None) -> list[dict]:
    """Audits newest first, as rows (without their full audit.json)."""
    import sqlalchemy as sa

    columns = [c for c in audits_table.c if c.name != "audit"]
    query = sa.select(*columns).order_by(audits_table.c.recorded_at.desc(), audits_table.c.id.desc())
    if model is not None:
        query = query.where(audits_table.c.model == model)
    if since is not None:
        query = query.where(audits_table.c.recorded_at >= since)
    if limit is not None:
        query = query.limit(limit)
    with db.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
