"""Typed dependencies of the EHC system's routes: the system, its signed callers, its
outage drill."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..common.cards.callers import ChannelApp, Terminal
from ..common.cards.routes import authenticate_app, authenticate_terminal
from .system import HealthcardSystem


def healthcard(request: Request) -> HealthcardSystem:
    return request.app.state.systems["healthcard"]


Healthcard = Annotated[HealthcardSystem, Depends(healthcard)]


async def channel_app(request: Request, hc: Healthcard) -> ChannelApp:
    return await authenticate_app(request, hc.callers)


async def terminal(request: Request, hc: Healthcard) -> Terminal:
    return await authenticate_terminal(request, hc.callers)


App = Annotated[ChannelApp, Depends(channel_app)]
Term = Annotated[Terminal, Depends(terminal)]


async def apply_faults(hc: Healthcard) -> None:
    """The outage drill on code fetches (``/admin/faults``)."""
    await hc.faults.apply()


Faults = Depends(apply_faults)
