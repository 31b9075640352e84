"""The hospital service assembled on its own store."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from ..common.db import make_engine
from ..common.settings import Settings
from .billing import Billing
from .calling import Calling
from .reports import Reports
from .schedule import Schedule
from .tables import metadata


@dataclass
class HospitalSystem:
    engine: Engine
    schedule: Schedule
    calling: Calling
    reports: Reports
    billing: Billing


def build_hospital(settings: Settings) -> HospitalSystem:
    engine = make_engine(settings, "hospital", metadata)
    schedule = Schedule(engine)
    return HospitalSystem(engine, schedule, Calling(schedule), Reports(engine),
                          Billing(engine))
