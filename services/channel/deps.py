"""Typed dependencies of the unified entry's routes: the entry and the logged-in
resident's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..common.errors import Unauthenticated
from .entry import ChannelSystem, Session


def channel(request: Request) -> ChannelSystem:
    return request.app.state.systems["channel"]


Channel = Annotated[ChannelSystem, Depends(channel)]


async def resident(request: Request, ch: Channel) -> Session:
    """The resident of the bearer session (``POST /channel/v1/login``)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthenticated("SESSION_INVALID", "log in first")
    session = ch.session(header[7:].strip())
    await ch.ready()
    return session


Resident = Annotated[Session, Depends(resident)]
