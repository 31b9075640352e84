"""The register of assumptions: every scenario input without a measured source, with the
range it plausibly lies in. ``ehc twin sensitivity`` moves each to its low and its high
end (one at a time, common random numbers) and reports its weight on the saving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from twin.scenario.schema import Scenario


@dataclass(frozen=True)
class Assumption:
    key: str  # dotted scenario key, e.g. "online.no_show_share"
    low: Any
    high: Any
    why: str


ASSUMPTIONS = (
    Assumption("online.prepaid_dispense_factor", 0.7, 1.0,
               "prescriptions paid on the phone are dispensed faster (no source)"),
    Assumption("online.no_show_share", 0.03, 0.15, "bookings never kept"),
    Assumption("online.holders_per_walk_in", 1, 4,
               "calling rule: holders called in a row while a walk-in waits"),
    Assumption("online.slot_length", "15 min", "60 min", "appointment slot length"),
    Assumption("online.late_share", 0.0, 0.25, "holders arriving after their slot"),
    Assumption("online.phone_payment_failure", 0.0, 0.06, "phone payments that fail"),
    Assumption("online.elderly_walk_factor", 1.0, 1.6, "the elderly walk slower"),
    Assumption("resources.kiosk_share", 0.2, 0.5,
               "traditional patients who register and pay at kiosks"),
    Assumption("demand.insured_share", 0.85, 0.97, "basic insurance coverage"),
    Assumption("demand.test_share", 0.35, 0.55, "visits with a lab test or imaging"),
    Assumption("demand.prescription_share", 0.55, 0.8, "visits ending at the pharmacy"),
    Assumption("demand.lab_share_of_tests", 0.5, 0.85, "tests at the lab, not imaging"),
    Assumption("demand.traditional_code_share", 0.0, 0.6,
               "traditional patients showing a code (moves the demand curve only)"),
    Assumption("online.queue_poll_every", "1 min", "5 min",
               "how often a waiting patient looks at the queue on the phone (moves the "
               "demand curve only)"),
    Assumption("online.booking_lead", "1 h", "24 h",
               "how long before the visit it is booked on the phone (moves the demand "
               "curve only)"),
    Assumption("demand.retail_purchases_per_visit", 0.2, 1.5,
               "insured retail pharmacy purchases around the hospital per visit (moves the "
               "demand curve only)"),
    Assumption("day.closing", "16:30", "18:00", "when the outpatient hall closes"),
    Assumption("fallback.manual_id", "0.5 min", "2 min", "keying a patient in by hand"),
    Assumption("service_level", 0.7, 0.9,
               "share within the target staffing is sized for (moves staffing.csv only)"),
)


def with_value(sc: Scenario, key: str, value: Any) -> Scenario:
    """The scenario with one dotted key set, the value validated as in a scenario file
    (units and all)."""
    *path, last = key.split(".")
    models: list[BaseModel] = [sc]
    for part in path:
        inner = getattr(models[-1], part) if part in type(models[-1]).model_fields else None
        if not isinstance(inner, BaseModel):  # not a section of the scenario
            raise KeyError(f"no scenario key {key!r}")
        models.append(inner)
    leaf = models[-1]
    if last not in type(leaf).model_fields:
        raise KeyError(f"no scenario key {key!r}")
    changed = leaf.model_copy(deep=True)
    type(changed).__pydantic_validator__.validate_assignment(changed, last, value)
    for parent, part in zip(reversed(models[:-1]), reversed(path), strict=True):
        changed = parent.model_copy(update={part: changed})
    assert isinstance(changed, Scenario)
    return changed
