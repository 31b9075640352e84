"""Typed dependencies of the e-SSC system's routes: the system, its signed callers, its
outage drill."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from ..common.cards.callers import ChannelApp, Terminal
from ..common.cards.routes import FaultDrill, SignedApp, SignedTerminal, SystemDependency
from .system import SocialcardSystem

Socialcard = Annotated[SocialcardSystem, Depends(SystemDependency("socialcard").of)]
App = Annotated[ChannelApp, Depends(SignedApp("socialcard"))]
Term = Annotated[Terminal, Depends(SignedTerminal("socialcard"))]
Faults = Depends(FaultDrill("socialcard"))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
