"""Typed dependencies of the EHC system's routes: the system, its signed callers, its
outage drill."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ..common.cards.callers import ChannelApp, Terminal
from ..common.cards.routes import FaultDrill, SignedApp, SignedTerminal, SystemDependency
from .system import HealthcardSystem

Healthcard = Annotated[HealthcardSystem, Depends(SystemDependency("healthcard").of)]
App = Annotated[ChannelApp, Depends(SignedApp("healthcard"))]
Term = Annotated[Terminal, Depends(SignedTerminal("healthcard"))]
Faults = Depends(FaultDrill("healthcard"))
