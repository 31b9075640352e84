"""Typed dependencies of the EHC system's routes: the system, its signed callers, its
outage drill."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..common.cards.callers import ChannelApp, Terminal
from ..common.cards.routes import FaultDrill, SignedApp, SignedTerminal
from .system import HealthcardSystem


def healthcard(request: Request) -> HealthcardSystem:
    return request.app.state.systems["healthcard"]


Healthcard = Annotated[HealthcardSystem, Depends(healthcard)]


App = Annotated[ChannelApp, Depends(SignedApp("healthcard"))]
Term = Annotated[Terminal, Depends(SignedTerminal("healthcard"))]
Faults = Depends(FaultDrill("healthcard"))
