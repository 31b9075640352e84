"""Bearer tokens of operators (admin), of peer systems (service) and of the data
resources layer (data, read-only exports), as dependencies.

The tokens live on the app (``app.state.admin_token`` / ``app.state.service_token``, set
where the stack is composed); a route states who may call it with ``dependencies=[Admin]``
or ``dependencies=[Peer]``."""

from __future__ import annotations

from fastapi import Depends, Request

from .crypto import constant_time_equal
from .errors import Forbidden, Unauthenticated


def _admit(request: Request, *tokens: str) -> None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthenticated("UNAUTHENTICATED", "bearer token required")
    given = header[7:].strip()
    if not any(constant_time_equal(given, tok) for tok in tokens):
        raise Forbidden("FORBIDDEN", "token not allowed here")


def require_admin(request: Request) -> None:
    """Operators only."""
    _admit(request, request.app.state.admin_token)


def require_service(request: Request) -> None:
    """Peer systems (the service token), and operators."""
    _admit(request, request.app.state.service_token, request.app.state.admin_token)


def require_data_reader(request: Request) -> None:
    """The data resources layer (its read-only token) on the export routes, and operators."""
    _admit(request, request.app.state.data_token, request.app.state.admin_token)


Admin = Depends(require_admin)
DataReader = Depends(require_data_reader)
Peer = Depends(require_service)
