"""Test settings: SQLite under a temporary folder, or a fresh PostgreSQL schema prefix."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

from services.common.settings import Settings
from services.sdk import RunningStack as LiveStack
from services.sdk import start_in_thread as start_stack

PG_ENV = "EHC_TEST_DATABASE_URL"
__all__ = ["PG_ENV", "Kept", "LiveStack", "backend_env", "drop_backend", "drop_schemas",
           "kill_now", "make_test_settings", "start_stack"]


class Kept(logging.Handler):
    """The records of a logger, kept for a test to read (the stack's loggers do not
    propagate to pytest's capture)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def backend_env(backend: str) -> dict[str, str]:
    """Environment of a server process on this backend: nothing for SQLite; for
    PostgreSQL, the test database with a fresh schema prefix (skipped when unset)."""
    if backend == "sqlite":
        return {}
    import pytest

    if not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    return {"EHC_DATABASE_URL": os.environ[PG_ENV],
            "EHC_DB_SCHEMA_PREFIX": f"p{uuid.uuid4().hex[:8]}_"}


def drop_backend(env: dict[str, str]) -> None:
    """Drop the schemas a server process made on PostgreSQL (nothing for SQLite)."""
    if env.get("EHC_DATABASE_URL"):
        drop_schemas(Settings(database_url=env["EHC_DATABASE_URL"],
                              db_schema_prefix=env["EHC_DB_SCHEMA_PREFIX"]))


def make_test_settings(tmp: Path, backend: str = "sqlite", **overrides) -> Settings:
    """SQLite under ``tmp``; or, for ``backend="postgres"``, a fresh schema prefix in the
    database that ``EHC_TEST_DATABASE_URL`` names (the caller skips when it is unset)."""
    extra: dict = {}
    if backend == "postgres":
        extra = {"database_url": os.environ[PG_ENV],
                 "db_schema_prefix": f"t{uuid.uuid4().hex[:8]}_"}
    return Settings(var_dir=tmp, log_level="WARNING", **{**extra, **overrides})


def drop_schemas(settings: Settings) -> None:
    if not settings.database_url or not settings.db_schema_prefix:
        return
    from sqlalchemy import create_engine, text

    eng = create_engine(settings.database_url)
    with eng.begin() as conn:
        names = conn.execute(text(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"
        ), {"p": settings.db_schema_prefix + "%"}).scalars().all()
        for n in names:
            conn.execute(text(f'DROP SCHEMA "{n}" CASCADE'))
    eng.dispose()


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_now(proc) -> None:
    """SIGKILL a server process (a crash, not a shutdown) and reap it."""
    import signal

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
