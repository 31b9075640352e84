"""A caller that hangs up while its body is read gets a quiet 400 CLIENT_DISCONNECTED,
not a server fault with a traceback in the log (a load generator stopping does this)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.app import build_app
from services.common.settings import Settings


def test_a_disconnect_while_the_body_is_read_is_no_server_fault(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = build_app(Settings(var_dir=tmp_path / "var", log_level="WARNING"))
    # a signed route without a body model: the terminal's signature check reads the body
    path = "/essc/v1/settlements/330100000001202611280000000001/settle"
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "client": ("t", 1),
             "server": ("s", 80), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 400 and orjson.loads(body)["code"] == "CLIENT_DISCONNECTED"
    assert "Traceback" not in caplog.text and "unhandled" not in caplog.text
