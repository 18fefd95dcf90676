"""Opening the history database: the URL checked, the schema created on first use, a database
written by an older spqr-fast migrated on request (`spqr-fast history migrate`) and one written
by a newer spqr-fast refused — each problem one line naming the fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .tables import meta_table, metadata

HISTORY_SCHEMA_VERSION = 1
# MIGRATIONS[i] takes a database from schema version i + 1 to i + 2, inside the migrating transaction.
Migration = Callable[["sa.Connection"], None]  # noqa: F821 - sqlalchemy is imported lazily
MIGRATIONS: tuple[Migration, ...] = ()
_SQLITE_BUSY_SECONDS = 60


def default_url(out_dir: Path) -> str:
    """Where a run records itself when no URL is given: a SQLite file in its output folder."""
    return f"sqlite:///{Path(out_dir).resolve() / 'history.sqlite'}"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is named by open_history
        return url


@dataclass
class HistoryDatabase:
    engine: "sa.Engine"  # noqa: F821
    url: str

    @contextmanager
    def transaction(self) -> Iterator["sa.Connection"]:  # noqa: F821
        """One transaction that writers take one at a time (SQLite: BEGIN IMMEDIATE; PostgreSQL:
        an advisory lock), so that two runs recording at once both land."""
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262817)"))
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def _engine(url: str):
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database not in ("", ":memory:") and not Path(database).parent.is_dir():
                raise InputError(f"history database '{url}': folder '{Path(database).parent}' does not exist — "
                                 "create it or give another --history URL")
            engine = sa.create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_SECONDS})
            _sqlite_immediate_transactions(engine)
            return engine
        return sa.create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise InputError(f"history URL '{shown_url(url)}': no SQLAlchemy dialect for it — use sqlite:///PATH or "
                         "postgresql+psycopg://…") from None
    except (ArgumentError, ValueError):
        raise InputError(f"history URL '{url}' is not a database URL — use sqlite:///PATH or "
                         "postgresql+psycopg://USER@HOST/DB") from None
    except ImportError as err:
        raise InputError(f"history URL '{shown_url(url)}' needs the '{err.name}' driver — "
                         "install spqr-fast[postgres]") from None


def _sqlite_immediate_transactions(engine) -> None:
    """SQLite transactions that take the write lock when they begin, so two writers queue on the
    busy timeout instead of one failing on a read-to-write upgrade (SQLAlchemy's documented recipe)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def stored_version(conn) -> int | None:
    """The schema version the database holds; None for an empty database. A database with other
    tables of ours but no version is not one spqr-fast wrote."""
    import sqlalchemy as sa

    names = set(sa.inspect(conn).get_table_names())
    if meta_table.name not in names:
        if names & {t.name for t in metadata.sorted_tables}:
            raise InputError("the history database has spqr-fast tables but no schema version — it was not "
                             "written by spqr-fast; give another --history URL")
        return None
    value = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
    if value is None or not str(value).isdigit():
        raise InputError("the history database has no readable schema version — give another --history URL")
    return int(value)


def open_history(url: str, *, migrate: bool = False, migrations: Sequence[Migration] = MIGRATIONS,
                 current: int = HISTORY_SCHEMA_VERSION) -> HistoryDatabase:
    """The database at `url`, its schema created if empty; an older schema is migrated only with
    `migrate` (one transaction), otherwise refused naming the command that does it."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    db = HistoryDatabase(_engine(url), url)
    try:
        with db.transaction() as conn:
            version = stored_version(conn)
            if version is None:
                metadata.create_all(conn)
                conn.execute(meta_table.insert().values(key="schema_version", value=str(current)))
            elif version > current:
                raise InputError(f"history database '{shown_url(url)}' has schema version {version}, newer than this "
                                 f"spqr-fast's {current} — upgrade spqr-fast to use it")
            elif version < current:
                if not migrate:
                    raise InputError(f"history database '{shown_url(url)}' has schema version {version}; this "
                                     f"spqr-fast uses {current} — run `spqr-fast history migrate --history "
                                     f"{shown_url(url)}` (back the database up first)")
                _migrate(conn, version, current, migrations)
    except (OperationalError, DBAPIError) as err:
        db.close()
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"history database '{shown_url(url)}' cannot be used ({reason[:200]}) — check the URL, "
                         "that the server is running and reachable, or give another --history URL") from None
    except BaseException:
        db.close()
        raise
    return db


def _migrate(conn, version: int, current: int, migrations: Sequence[Migration]) -> None:
    import sqlalchemy as sa

    for step in range(version, current):
        if step - 1 >= len(migrations):
            raise InputError(f"no migration from history schema version {step} — this spqr-fast cannot migrate it")
        migrations[step - 1](conn)
    conn.execute(sa.update(meta_table).where(meta_table.c.key == "schema_version").values(value=str(current)))
