"""Typed dependencies of the e-SSC system's routes: the system, its signed callers, its
outage drill."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from ..common.cards.callers import ChannelApp, Terminal
from ..common.cards.routes import authenticate_app, authenticate_terminal
from .system import SocialcardSystem


def socialcard(request: Request) -> SocialcardSystem:
    return request.app.state.systems["socialcard"]


Socialcard = Annotated[SocialcardSystem, Depends(socialcard)]


async def channel_app(request: Request, sc: Socialcard) -> ChannelApp:
    return await authenticate_app(request, sc.callers)


async def terminal(request: Request, sc: Socialcard) -> Terminal:
    return await authenticate_terminal(request, sc.callers)


App = Annotated[ChannelApp, Depends(channel_app)]
Term = Annotated[Terminal, Depends(terminal)]


async def apply_faults(sc: Socialcard) -> None:
    """The outage drill on the peer, verify and settlement routes (``/admin/faults``)."""
    await sc.faults.apply()


Faults = Depends(apply_faults)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
