"""Typed dependencies of the e-SSC system's routes: the system, its signed callers, its
outage drill."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from ..common.cards.callers import ChannelApp, Terminal
from ..common.cards.routes import FaultDrill, SignedApp, SignedTerminal
from .system import SocialcardSystem


def socialcard(request: Request) -> SocialcardSystem:
    return request.app.state.systems["socialcard"]


Socialcard = Annotated[SocialcardSystem, Depends(socialcard)]


App = Annotated[ChannelApp, Depends(SignedApp("socialcard"))]
Term = Annotated[Terminal, Depends(SignedTerminal("socialcard"))]
Faults = Depends(FaultDrill("socialcard"))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
