"""A real stack for tests: uvicorn serving the app over real HTTP in a thread."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from services.app import build_app
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings

PG_ENV = "EHC_TEST_DATABASE_URL"


def test_settings(tmp: Path, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    """SQLite under ``tmp`` by default; a fresh schema prefix on PostgreSQL when
    ``EHC_TEST_DATABASE_URL`` is set."""
    pg = os.environ.get(PG_ENV)
    extra = {}
    if pg:
        extra = {"database_url": pg, "db_schema_prefix": f"t{uuid.uuid4().hex[:8]}_"}
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


@dataclass
class LiveStack:
    url: str
    admin_token: str
    settings: Settings
    app: object
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_stack(settings: Settings, systems=None) -> LiveStack:  # type: ignore[no-untyped-def]
    app = build_app(settings, systems) if systems else build_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveStack(f"http://127.0.0.1:{port}", deployment_secret(settings, "admin_token"),
                     settings, app, server, thread)
