"""Bearer tokens of operators (admin) and of peer systems (service)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from .crypto import constant_time_equal
from .errors import Forbidden, Unauthenticated


def bearer_guard(*tokens: Callable[[], str]) -> Callable[[Request], None]:
    """A dependency that admits a request carrying any of the given tokens."""

    def guard(request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise Unauthenticated("UNAUTHENTICATED", "bearer token required")
        given = header[7:].strip()
        if not any(constant_time_equal(given, tok()) for tok in tokens):
            raise Forbidden("FORBIDDEN", "token not allowed here")

    return guard
