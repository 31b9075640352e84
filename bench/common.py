"""Helpers of the benchmarks: timing loops and where results go."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path("results/bench")


def ops_per_second(fn: Callable[[], object], min_seconds: float = 1.0) -> float:
    """Calls of ``fn`` per second over at least ``min_seconds`` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            fn()
        n += 10
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed


def save(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"machine": {"python": platform.python_version(), "cpu": platform.processor(),
                        "system": platform.platform()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def app_limit_as_in_service() -> dict[str, str]:
    """The servers' environment that keeps the channel apps' rate limit at its default
    (``prepared_store`` lifts it): each refresh pays for its app's paced bucket, the one row
    every refresh of an app moves on every server, as it does in service."""
    from services import sdk

    return {"EHC_RATE_LIMIT_APP_PER_S": str(
        sdk.Settings.model_fields["rate_limit_app_per_s"].default)}


def prepared_store(database_url: str | None, name: str, **env: str) -> tuple[dict[str, str], str]:
    """A fresh store for a benchmark's servers (a temporary SQLite folder, or a schema
    prefix of its own on PostgreSQL), its tables, keys and secrets made once: the servers'
    environment (the per-caller rate limits lifted, ``env`` added) and the admin token."""
    import os
    import tempfile
    import uuid

    from services import sdk

    var = Path(tempfile.mkdtemp(prefix=f"ehc-{name}-"))
    server_env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
                  "EHC_RATE_LIMIT_TERMINAL_PER_S": "0", "EHC_RATE_LIMIT_APP_PER_S": "0", **env}
    if database_url:
        server_env |= {"EHC_DATABASE_URL": database_url,
                       "EHC_DB_SCHEMA_PREFIX": f"{name[:2]}{uuid.uuid4().hex[:8]}_"}
    token = sdk.prepare_store(sdk.Settings(
        var_dir=var, database_url=database_url,
        db_schema_prefix=server_env.get("EHC_DB_SCHEMA_PREFIX", "")))
    return server_env, token
