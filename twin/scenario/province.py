"""The province scenario: cities, hospitals by archetype, adoption over months, money,
and the paper's figures to compare with. Loaded from YAML with the same clear errors as
hospital scenarios."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from twin.scenario.schema import (
    PerDay,
    Scenario,
    ScenarioError,
    Share,
    Strict,
    describe_errors,
    load_scenario,
    read_yaml_mapping,
)


class Archetype(Strict):
    scenario: str = Field(description="hospital scenario file, relative to this file")
    level: Literal["tertiary", "secondary"]
    daily_visits: PerDay = Field(ge=1, description="visits a day per hospital (assumption)")


class City(Strict):
    name: str
    area_code: str = Field(pattern=r"^\d{6}$")
    population_millions: float = Field(gt=0, description="2020 census")
    hospitals: dict[str, int] = Field(description="archetype -> count (assumption)")
    adoption_by_month: dict[int, Share] = Field(
        description="share of visits in the online fused-card flow by month of roll-out "
        "at the hospitals that are live, as far as fused cards allow; months in between "
        "are interpolated")
    hospitals_live_by_month: dict[int, Share] = Field(
        default_factory=lambda: {0: 1.0}, description="share of the city's hospitals that "
        "take the fused code, by month (interpolated); the others run the traditional flow")
    fused_cards_by_month: dict[int, float] | None = Field(
        None, description="fused cards (millions) by month (interpolated); they bound the "
        "adoption: at most fused / population x the province's card_visit_ratio of visits "
        "can be card users' (unset: not bounded)")
    ehc_cards_millions: float = Field(ge=0)
    fused_cards_millions: float = Field(ge=0)

    @field_validator("hospitals")
    @classmethod
    def _counts(cls, v: dict[str, int]) -> dict[str, int]:
        if any(n < 0 for n in v.values()):
            raise ValueError("hospital counts must not be negative")
        return v

    @field_validator("adoption_by_month", "hospitals_live_by_month", "fused_cards_by_month")
    @classmethod
    def _months(cls, v: dict[int, float] | None) -> dict[int, float] | None:
        if v is None:
            return v
        if not v or any(m < 0 for m in v) or any(x < 0 for x in v.values()):
            raise ValueError("give at least one month >= 0, with values >= 0")
        return dict(sorted(v.items()))

    def adoption(self, month: int) -> float:
        """The adoption the scenario asks for (before the fused-card bound)."""
        return interpolate(self.adoption_by_month, month)

    def hospitals_live(self, month: int, count: int) -> int:
        """How many of ``count`` hospitals take the fused code in a month."""
        return round(count * interpolate(self.hospitals_live_by_month, month))

    def card_bound(self, month: int, card_visit_ratio: float) -> float:
        """The largest share of visits card users can make (1 when unbounded)."""
        if self.fused_cards_by_month is None:
            return 1.0
        holders = interpolate(self.fused_cards_by_month, month) / self.population_millions
        return min(1.0, holders * card_visit_ratio)

    def live_adoption(self, month: int, card_visit_ratio: float) -> float:
        """Adoption at a live hospital: the scenario's, within what fused cards allow."""
        return min(self.adoption(month), self.card_bound(month, card_visit_ratio))


def interpolate(table: dict[int, float], month: int) -> float:
    """A by-month table's value, linear between its months, flat beyond them."""
    if month in table:
        return table[month]
    months = list(table)
    if month <= months[0]:
        return table[months[0]]
    for a, b in pairwise(months):
        if a <= month <= b:
            return table[a] + (table[b] - table[a]) * (month - a) / (b - a)
    return table[months[-1]]


class Money(Strict):
    kiosk_maintenance_yuan_per_year: int = Field(
        10_000, ge=0, description="per kiosk (assumption: service contract, paper rolls, "
        "repairs)")
    window_staff_yuan_per_hour: int = Field(60, ge=0, description="assumption")
    target_utilisation: float = Field(0.8, gt=0, le=1, description="busy share at which a "
                                      "window or kiosk counts as fully needed (assumption)")


class PaperFigures(Strict):
    """What the paper states (docs/sources.md, the paper), to be compared, never fitted."""

    minutes_saved_per_visit: float = 20
    days_saved_per_year: float = 3.0e6
    implied_visits_per_year: float = 216e6
    kiosk_saving_yuan_per_tertiary: float = 300_000
    ehc_cards_millions: float = 30
    fused_cards_millions: float = 1.2


class Province(Strict):
    name: str
    description: str = ""
    seed: int = Field(20240601, ge=0, description="base random seed")
    replications: int = Field(1, ge=1, le=100)
    days_per_year: int = Field(365, ge=1, le=366, description="days the outpatient volume "
                               "is counted over (the paper's arithmetic uses a calendar year)")
    card_visit_ratio: float = Field(1.5, ge=0.5, le=5, description="a fused-card holder's "
                                    "outpatient visits against an average resident's "
                                    "(assumption, plausible 1-3: those who fuse their cards "
                                    "are those who visit); with fused_cards_by_month it "
                                    "bounds adoption")
    archetypes: dict[str, Archetype]
    cities: list[City]
    money: Money = Field(default_factory=Money)
    paper: PaperFigures = Field(default_factory=PaperFigures)

    @field_validator("cities")
    @classmethod
    def _cities(cls, v: list[City]) -> list[City]:
        if not v:
            raise ValueError("at least one city")
        return v

    def hospital_scenarios(self, base_dir: Path) -> dict[str, Scenario]:
        """Each archetype's hospital scenario scaled to its daily visits."""
        return {name: scale_hospital(load_scenario(base_dir / a.scenario), a.daily_visits)
                for name, a in self.archetypes.items()}

    def visits_per_day(self) -> int:
        return sum(self.archetypes[a].daily_visits * n
                   for c in self.cities for a, n in c.hospitals.items())


def scale_hospital(sc: Scenario, daily_visits: int) -> Scenario:
    """The same hospital design for another volume: every count of windows, kiosks,
    rooms and doctors scales with the visits (rounded up, at least one)."""
    f = daily_visits / max(sc.demand.daily_visits, 1)
    up = lambda n: max(1, math.ceil(n * f)) if n else 0  # noqa: E731
    r = sc.resources
    resources = r.model_copy(update={k: up(getattr(r, k)) for k in (
        "registration_windows", "kiosks", "payment_windows", "pharmacy_windows",
        "lab_stations", "imaging_rooms", "checkin_scanners")})
    deps = [d.model_copy(update={"doctors": up(d.doctors)}) for d in sc.hospital.departments]
    return sc.model_copy(update={
        "resources": resources,
        "hospital": sc.hospital.model_copy(update={"departments": deps}),
        "demand": sc.demand.model_copy(update={"daily_visits": daily_visits}),
    })


def load_province(path: str | Path) -> Province:
    path = Path(path)
    data = read_yaml_mapping(path, "province")
    data.setdefault("name", path.stem)
    try:
        prov = Province.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(describe_errors(path, exc)) from None
    for c in prov.cities:
        unknown = set(c.hospitals) - set(prov.archetypes)
        if unknown:
            raise ScenarioError(f"{path}: cities.{c.name}.hospitals: unknown archetype(s) "
                                f"{sorted(unknown)}")
    for name, a in prov.archetypes.items():
        if not (path.parent / a.scenario).exists():
            raise ScenarioError(f"{path}: archetypes.{name}.scenario: no such file "
                                f"{a.scenario}")
    return prov
