"""Injected faults for outage drills and co-simulation: an operator can make a system's
routes slow or unavailable (the peers then see exactly what a real outage shows them)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ..errors import Unavailable


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    delay_ms: int = Field(0, ge=0, le=60_000, description="added to every affected request")
    unavailable: bool = Field(False, description="affected requests answer 503")


@dataclass
class Faults:
    delay_s: float = 0.0
    unavailable: bool = False

    def set(self, spec: FaultSettings) -> dict:
        self.delay_s = spec.delay_ms / 1000
        self.unavailable = spec.unavailable
        return {"delay_ms": spec.delay_ms, "unavailable": spec.unavailable}

    async def apply(self) -> None:
        """A FastAPI dependency of the routes a drill affects."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.unavailable:
            raise Unavailable("SERVICE_UNAVAILABLE", "unavailable (injected fault)")
