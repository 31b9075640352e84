"""The channel entry's peers: it calls both card systems as a signed channel app, and the
registry with the service token."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from ..common.peer import PeerClient
from ..common.signing import sign_headers


class SignedAppClient(PeerClient):
    """A peer the channel reaches as a channel app (every request signed HMAC-SM3)."""

    def __init__(self, name: str, base_url: str, app: Any = None) -> None:
        super().__init__(base_url, token="", app=app)
        self.name = name
        self._client.headers.pop("Authorization", None)
        self.app_key = ""
        self.secret = ""

    def use(self, app_key: str, secret: str) -> None:
        self.app_key, self.secret = app_key, secret

    async def signed(self, method: str, path: str, payload: Any = None,
                     params: dict[str, Any] | None = None) -> Any:
        body = b"" if payload is None else orjson.dumps(payload)
        query = urlencode(params) if params else ""
        headers = {"Content-Type": "application/json",
                   **sign_headers(self.app_key, method, path, body, query,
                                  secret=self.secret)}
        return await self.call(method, path + ("?" + query if query else ""),
                               content=body, headers=headers)


class OperatorClient(PeerClient):
    """The admin token, used once to register the entry as a channel app."""

    name = "operator"


class HospitalPeer(PeerClient):
    """The hospital's outpatient service, called with the service token on behalf of the
    logged-in resident (their own card only)."""

    name = "hospital"
