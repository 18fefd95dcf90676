"""A real PostgreSQL server for the tests, started in a temporary folder from Debian's
`postgresql` binaries (as an unprivileged user when the tests run as root), or a skip reason."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def start_postgres(port: int = 54329) -> tuple[str | None, str | None, callable]:
    """(URL, None, stop) — or (None, why not, no-op). The server lives in a fresh folder under
    /tmp (short enough for its socket's path, reachable by the unprivileged user)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        return None, "PostgreSQL is not installed (apt-get install postgresql)", lambda: None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install spqr-fast[postgres])", lambda: None
    folder = Path(tempfile.mkdtemp(prefix="spqr-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            return None, "running as root without runuser: cannot start PostgreSQL unprivileged", lambda: None
        as_user = [runuser, "-u", "nobody", "--"]
        shutil.chown(folder, "nobody")
    data = folder / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    done = run(initdb, "-D", str(data), "-A", "trust", "-U", "spqr", "--no-sync")
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        return None, f"initdb failed: {done.stderr.strip()[:200]}", lambda: None
    done = run(pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
               f"-k {folder} -p {port} -c listen_addresses='' -c fsync=off", "start")
    if done.returncode != 0:
        return None, f"PostgreSQL did not start: {done.stderr.strip()[:200]}", lambda: None

    def stop() -> None:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)

    return f"postgresql+psycopg://spqr@/postgres?host={folder}&port={port}", None, stop
