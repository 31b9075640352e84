"""Base of the HTTP clients one system uses to reach a peer system (never its tables).

In the one-process mode the transport is the in-process ASGI app; otherwise a URL."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from .errors import ApiError


class PeerUnavailable(ApiError):
    def __init__(self, peer: str, detail: str) -> None:
        super().__init__(503, f"{peer.upper()}_UNAVAILABLE", f"{peer} did not answer: {detail}")


class PeerClient:
    name = "peer"

    def __init__(self, base_url: str, token: str, app: Any = None, timeout_s: float = 5.0):
        transport = httpx.ASGITransport(app=app) if app is not None else None
        self._client = httpx.AsyncClient(
            base_url=base_url, transport=transport, timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def post(self, path: str, payload: Any, timeout_s: float | None = None) -> Any:
        return await self.call("POST", path, content=orjson.dumps(payload),
                               headers={"Content-Type": "application/json"},
                               timeout_s=timeout_s)

    async def get(self, path: str, params: dict | None = None) -> Any:
        return await self.call("GET", path, params=params)

    async def call(self, method: str, path: str, *, timeout_s: float | None = None,
                   **kw: Any) -> Any:  # kw: httpx request arguments (json, params, ...)
        """The peer's JSON answer; its refusals as ApiError, silence as PeerUnavailable."""
        try:
            extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
            resp = await self._client.request(method, path, **kw, **extra)
        except httpx.HTTPError as exc:
            raise PeerUnavailable(self.name, type(exc).__name__) from exc
        if resp.status_code >= 500:
            raise PeerUnavailable(self.name, f"HTTP {resp.status_code}")
        body = orjson.loads(resp.content) if resp.content else None
        if resp.status_code >= 400:
            err = body if isinstance(body, dict) else {}
            raise ApiError(resp.status_code, err.get("code", "PEER_ERROR"),
                           err.get("message", ""))
        return body

    async def aclose(self) -> None:
        await self._client.aclose()
