"""Scenario schema of the hospital twin, loaded from YAML with clear errors.

Every parameter has a unit (in the value, e.g. ``"10 min"``), a default and a source in
its description (``ehc twin params`` prints them). A scenario may ``extends:`` another
file and override any key (deep merge)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from twin.scenario.distributions import Dist, Minutes
from twin.scenario.units import UnitError, fraction, per_day

Share = Annotated[float, BeforeValidator(fraction), Field(ge=0, le=1)]
PerDay = Annotated[int, BeforeValidator(per_day)]  # 12000 or "12000 /day"

AgeGroup = Literal["child", "adult", "elderly"]


def _default_age_shares() -> dict[AgeGroup, float]:
    return {"child": 0.15, "adult": 0.60, "elderly": 0.25}


def _default_adoption_by_age() -> dict[AgeGroup, float]:
    return {"child": 1.0, "adult": 1.15, "elderly": 0.6}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names file, key and problem."""


def clock_minutes(text: object) -> float:
    """``"07:30"`` -> minutes from midnight."""
    if not isinstance(text, str) or len(text.split(":")) != 2:
        raise UnitError(f"a time of day is 'HH:MM' (got {text!r})")
    h, m = text.split(":")
    if not (h.isdigit() and m.isdigit() and int(h) < 24 and int(m) < 60):
        raise UnitError(f"a time of day is 'HH:MM' (got {text!r})")
    return int(h) * 60 + int(m)


ClockTime = Annotated[float, BeforeValidator(clock_minutes)]


class Strict(BaseModel):
    # a number with no end (``.inf``, ``.nan`` in YAML) is refused, not simulated for ever
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def D(dist: str, source: str, **params: Any) -> Any:
    """A default distribution with its source."""
    return Field(default_factory=lambda: Dist(dist=dist, source=source, **params),
                 description=source)


class Day(Strict):
    arrivals_from: ClockTime = Field(450.0, description="first arrival, HH:MM (assumption)")
    arrivals_until: ClockTime = Field(990.0, description="last arrival, HH:MM (assumption)")
    closing: ClockTime = Field(1050.0, description="closing time, HH:MM: patients still in "
                               "at close are finished as overtime and reported (assumption)")
    max_overtime_h: float = Field(12.0, gt=0, le=240, description="hours past closing after "
                                  "which a day that has not ended is refused (its capacity is "
                                  "far below its demand)")
    hourly_profile: dict[int, float] = Field(
        default_factory=lambda: {7: 0.9, 8: 1.7, 9: 1.8, 10: 1.5, 11: 1.0, 12: 0.4,
                                 13: 0.8, 14: 0.9, 15: 0.7, 16: 0.3},
        description="relative arrival intensity by clock hour; morning peak "
        "(assumption shaped on typical Chinese outpatient curves)")

    @field_validator("hourly_profile")
    @classmethod
    def _profile(cls, v: dict[int, float]) -> dict[int, float]:
        if any(not 0 <= h <= 23 for h in v):
            raise ValueError("hours are 0..23")
        if any(w < 0 for w in v.values()):
            raise ValueError("weights must not be negative")
        return v

    @model_validator(mode="after")
    def _window(self) -> Day:
        if self.arrivals_until < self.arrivals_from:
            raise ValueError("arrivals_until is before arrivals_from")
        if self.closing < self.arrivals_until:
            raise ValueError("closing is before arrivals_until")
        return self


class Department(Strict):
    name: str
    share: Share = Field(description="share of first visits")
    doctors: int = Field(ge=1, description="consulting rooms staffed")
    named_doctors: bool = Field(False, description="patients see the doctor they chose "
                                "and queue for that doctor alone (a named-expert clinic, "
                                "专家门诊); false: the department's doctors share one queue")


class Demand(Strict):
    daily_visits: PerDay = Field(12000, ge=0, description="outpatient visits a day; a big "
                              "Zhejiang tertiary hospital sees 12,000-14,000 (docs/sources.md)")
    adoption: Share = Field(0.0, description="share of patients in the online fused-card "
                            "flow (scenario lever)")
    age_shares: dict[AgeGroup, Share] = Field(
        default_factory=_default_age_shares,
        description="assumption")
    adoption_by_age: dict[AgeGroup, float] = Field(
        default_factory=_default_adoption_by_age,
        description="relative propensity of each age group to use the online flow, scaled "
        "so that the whole day's adoption is `adoption` (assumption: the elderly and people "
        "without a smartphone less, children through their parents' phones)")
    insured_share: Share = Field(0.92, description="assumption (basic insurance coverage)")
    traditional_code_share: Share = Field(0.3, description="traditional patients who show "
                                          "an EHC code (or card) at each station, a "
                                          "verification each time (assumption, plausible "
                                          "0-0.6; the others give their ID or a paper "
                                          "card): the demand curve counts only scans")
    test_share: Share = Field(0.45, description="visits with lab or imaging (assumption)")
    lab_share_of_tests: Share = Field(0.7, description="lab rather than imaging (assumption)")
    prescription_share: Share = Field(0.7, description="visits ending at the pharmacy "
                                      "(assumption)")
    retail_purchases_per_visit: float = Field(
        0.5, ge=0, le=20, description="purchases paid with the insurance card at "
        "designated retail pharmacies (定点药店) around the hospital, per outpatient visit of "
        "its day; the adopters' share of them shows the fused code: a code refresh, a scan, "
        "a settlement and the cash part's payment on the card network (assumption, "
        "plausible 0.2-1.5, no source; moves the demand curve only)")
    retail_opens: ClockTime = Field(480.0, description="retail pharmacies' purchases start, "
                                    "HH:MM (assumption)")
    retail_closes: ClockTime = Field(1260.0, description="and end, HH:MM: spread evenly "
                                     "between the two (assumption)")

    @field_validator("age_shares")
    @classmethod
    def _sum(cls, v: dict[Any, float]) -> dict[Any, float]:
        if abs(sum(v.values()) - 1) > 1e-6:
            raise ValueError("age shares must sum to 1")
        return v

    @model_validator(mode="after")
    def _retail_hours(self) -> Demand:
        if self.retail_closes <= self.retail_opens:
            raise ValueError("retail_closes is not after retail_opens")
        return self

    @field_validator("adoption_by_age")
    @classmethod
    def _propensities(cls, v: dict[Any, float]) -> dict[Any, float]:
        if any(x < 0 for x in v.values()) or not any(x > 0 for x in v.values()):
            raise ValueError("propensities are >= 0 and at least one is above 0")
        return v

    def adoption_of_ages(self) -> tuple[float, float, float]:
        """The online share of children, adults and the elderly: proportional to their
        propensities, none above 1, the day's share equal to ``adoption`` (bisection on
        the scale, since groups that reach 1 hand their excess to the others)."""
        groups: tuple[AgeGroup, ...] = ("child", "adult", "elderly")
        share = [self.age_shares.get(g, 0.0) for g in groups]
        prop = [self.adoption_by_age.get(g, 1.0) for g in groups]
        reachable = sum(s for s, f in zip(share, prop, strict=True) if f > 0)
        target = min(self.adoption, reachable)
        if target >= reachable - 1e-12:  # everyone who can be online is
            full = [1.0 if f > 0 else 0.0 for f in prop]
            return full[0], full[1], full[2]

        def day_share(scale: float) -> float:
            return sum(s * min(1.0, f * scale) for s, f in zip(share, prop, strict=True))

        lo, hi = 0.0, 1.0
        while day_share(hi) < target and hi < 1e9:
            hi *= 2
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if day_share(mid) < target else (lo, mid)
        rates = [min(1.0, f * hi) for f in prop]
        return rates[0], rates[1], rates[2]


ShiftKey = Literal["registration_windows", "kiosks", "payment_windows", "pharmacy_windows",
                   "lab_stations", "imaging_rooms", "checkin_scanners", "doctors"]


class Resources(Strict):
    registration_windows: int = Field(28, ge=1, description="staffed registration windows "
                                      "(also where the online flow falls back)")
    kiosks: int = Field(60, ge=0, description="self-service kiosks (registration, payment, "
                        "reports); 0: none, everyone uses the windows")
    kiosk_share: Share = Field(0.35, description="traditional patients who register and "
                               "pay at kiosks rather than windows (assumption)")
    payment_windows: int = Field(24, ge=1, description="pricing/payment windows")
    pharmacy_windows: int = Field(23, ge=1, description="dispensing windows")
    lab_stations: int = Field(24, ge=1, description="sample collection stations")
    imaging_rooms: int = Field(28, ge=1, description="imaging rooms (CT, DR, ultrasound)")
    checkin_scanners: int = Field(60, ge=1, description="code scanners at departments")
    shifts: dict[ShiftKey, dict[ClockTime, Any]] = Field(default_factory=dict, description=(
        "servers open from a time of day on, per station: e.g. registration_windows: "
        "{'11:30': 15, '13:30': 30, '16:00': 10}; doctors as the share of each department's "
        "consulting rooms: {'12:00': '40 %', '13:30': '100 %'}. Before a station's first "
        "change, its count above is open; a station set to 0 serves nobody until it opens "
        "again"))

    @model_validator(mode="after")
    def _shift_values(self) -> Resources:
        for key, changes in self.shifts.items():
            for at, value in list(changes.items()):
                where = f"shifts.{key} at {int(at) // 60:02d}:{int(at) % 60:02d}"
                if key == "doctors":
                    share = fraction(value)
                    if not 0 <= share <= 1:
                        raise ValueError(f"{where}: a share of the doctors, 0-100 %")
                    changes[at] = share
                elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{where}: a whole number of servers, 0 or more "
                                     f"(got {value!r})")
            self.shifts[key] = dict(sorted(changes.items()))
        return self

    def open_at(self, key: ShiftKey, clock_min: float) -> float:
        """Servers of ``key`` open at a time of day (for doctors: the share open)."""
        value = 1.0 if key == "doctors" else float(getattr(self, key))
        for at, v in self.shifts.get(key, {}).items():
            if at <= clock_min:
                value = v
        return value


class Times(Strict):
    registration_window: Dist = D("lognormal", "assumption: about 1.5 min a transaction",
                                  median="1.4 min", sigma=0.4)
    registration_kiosk: Dist = D("lognormal", "assumption", median="1.6 min", sigma=0.4)
    payment_window: Dist = D("lognormal", "assumption: pricing and payment at a window",
                             median="1.3 min", sigma=0.4)
    consult_first: Dist = D(
        "quantiles", "median 10 min, IQR 5-12 in tertiary hospitals, Lancet 2018 "
        "(docs/sources.md), met exactly; the tails (2 min at the least, 20 at p95, 35 at the "
        "most) are an assumption", points=[(0, "2 min"), (0.25, "5 min"), (0.5, "10 min"),
                              (0.75, "12 min"), (0.95, "20 min"), (1, "35 min")])
    consult_revisit: Dist = D("lognormal", "assumption: reading results", median="4 min",
                              sigma=0.5)
    lab_service: Dist = D("lognormal", "assumption: sample collection", median="1.5 min",
                          sigma=0.4)
    lab_turnaround: Dist = D("gamma", "assumption: routine lab turnaround", mean="50 min",
                             cv=0.4)
    imaging_service: Dist = D("lognormal", "assumption", median="6 min", sigma=0.5)
    imaging_turnaround: Dist = D("gamma", "assumption: imaging report", mean="60 min", cv=0.4)
    report_print: Dist = D("lognormal", "assumption: printing a paper report at a kiosk",
                           median="0.8 min", sigma=0.3)
    pharmacy_dispense: Dist = D("lognormal", "assumption", median="1.4 min", sigma=0.4)
    walk: Dist = D("triangular", "assumption: one walk between buildings of a big hospital",
                   low="0.5 min", mode="1.5 min", high="3 min")
    checkin_scan: Dist = D("uniform", "assumption: one code scan", low="0.1 min",
                           high="0.3 min")
    phone_payment: Dist = D("uniform", "assumption: settlement and self-pay on the phone",
                            low="0.3 min", high="1 min")


class Online(Strict):
    slot_length: Minutes = Field(30.0, gt=0, description="appointment slot length "
                                 "(assumption: half-hour slots)")
    early: Dist = D("triangular", "assumption: minutes before the slot starts",
                    low="0 min", mode="10 min", high="30 min")
    late_share: Share = Field(0.1, description="share arriving after the slot started")
    late: Dist = D("uniform", "assumption: minutes after the slot started", low="0 min",
                   high="20 min")
    no_show_share: Share = Field(0.08, description="booked but never came (assumption)")
    call_delay: Dist = D("uniform", "assumption: the doctor calls an appointment when "
                         "ready, up to a few minutes after its time", low="0 min",
                         high="3 min")
    phone_payment_failure: Share = Field(0.02, description="falls back to a payment window")
    holders_per_walk_in: int = Field(2, ge=1, le=20, description="calling rule: appointment "
                                     "holders called in a row while a walk-in waits "
                                     "(assumption, plausible 1-4; services/rules/calling.py)")
    prepaid_dispense_factor: float = Field(1.0, gt=0, le=1, description="dispensing time "
                                           "factor for prescriptions paid before arrival "
                                           "(assumption, plausible 0.7-1.0; no source: "
                                           "traditional patients also pay before the "
                                           "pharmacy, so 1.0 claims no saving)")
    elderly_walk_factor: float = Field(1.3, ge=1, description="assumption")
    queue_poll_every: Minutes = Field(2.0, gt=0, description="an online patient waiting for "
                                      "the doctor looks at their place on the phone this "
                                      "often (assumption, plausible 1-5 min; moves the "
                                      "card network's demand curve only)")
    booking_lead: Minutes = Field(24 * 60.0, gt=0, le=7 * 24 * 60, description="how long "
                                  "before the visit an online patient books it: the booking "
                                  "call lands at that time of day (assumption, plausible "
                                  "1-24 h; moves the demand curve only)")


class Fault(Strict):
    """The card network (or only the e-SSC side) down or slow for a part of the day."""

    target: Literal["card_network", "socialcard"] = Field(description=(
        "card_network: codes cannot be verified at all; socialcard: the EHC identity still "
        "answers (marked partial) but insurance settlement and phone payment fail"))
    start: ClockTime = Field(description="HH:MM")
    end: ClockTime = Field(description="HH:MM")
    mode: Literal["down", "slow"] = "down"
    delay_ms: int = Field(0, ge=0, le=60_000, description="slow: added to every call")

    @model_validator(mode="after")
    def _window(self) -> Fault:
        if self.end <= self.start:
            raise ValueError("a fault ends after it starts")
        if self.mode == "slow" and self.delay_ms == 0:
            raise ValueError("a slow fault needs delay_ms")
        return self


class Fallback(Strict):
    """What the online flow does when the card network fails it, as a real hospital
    would: check in at a registration window with a temporary card, pay at a window, and
    at clinical stations look the patient up by hand."""

    manual_id: Minutes = Field(1.0, ge=0, description="staff keying the patient in by "
                               "hand at a station (assumption)")


class Hospital(Strict):
    name: str = "Tertiary hospital"
    level: Literal["tertiary", "secondary"] = "tertiary"
    departments: list[Department] = Field(default_factory=lambda: [
        Department(name="internal medicine", share=0.30, doctors=108),
        Department(name="surgery", share=0.20, doctors=72),
        Department(name="paediatrics", share=0.15, doctors=54),
        Department(name="obstetrics & gynaecology", share=0.12, doctors=43),
        Department(name="other specialties", share=0.23, doctors=83),
    ], description="assumption: doctors sized to the visit volume")

    @field_validator("departments")
    @classmethod
    def _shares(cls, v: list[Department]) -> list[Department]:
        if not v:
            raise ValueError("at least one department")
        if abs(sum(d.share for d in v) - 1) > 1e-6:
            raise ValueError("department shares must sum to 1")
        return v


class Scenario(Strict):
    name: str
    description: str = ""
    seed: int = Field(20240601, ge=0, description="base random seed")
    replications: int = Field(10, ge=1, le=10_000)
    service_target_min: Minutes = Field(10.0, gt=0, description="the wait target service "
                                        "levels are measured against (the 10-minute policy "
                                        "target, docs/sources.md)")
    service_level: Share = Field(0.8, description="share of uses that must wait at most "
                                 "service_target_min: what staffing.csv sizes each station "
                                 "and hour for (assumption: a common call-centre standard)")
    hospital: Hospital = Field(default_factory=Hospital)
    day: Day = Field(default_factory=Day)
    demand: Demand = Field(default_factory=Demand)
    resources: Resources = Field(default_factory=Resources)
    times: Times = Field(default_factory=Times)
    online: Online = Field(default_factory=Online)
    faults: list[Fault] = Field(default_factory=list, description="card-network outages "
                                "of the day (none by default)")
    fallback: Fallback = Field(default_factory=Fallback)

    def with_adoption(self, adoption: float) -> Scenario:
        return self.model_copy(update={
            "demand": self.demand.model_copy(update={"adoption": adoption}),
            "name": f"{self.name}@{adoption:.0%}"})


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def read_yaml_mapping(path: Path, what: str = "scenario") -> dict:
    """A YAML file that must hold a mapping, or a ScenarioError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ScenarioError(f"{path}: no such {what} file") from exc
    except IsADirectoryError as exc:
        raise ScenarioError(f"{path}: a folder, not a {what} file (give the YAML file "
                            "inside it)") from exc
    except PermissionError as exc:
        raise ScenarioError(f"{path}: not readable (permission denied)") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not a text file (UTF-8 YAML expected)") from exc
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a {what} is a mapping of keys")
    return data


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise ScenarioError(f"{path}: 'extends' forms a cycle")
    data = read_yaml_mapping(path)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ScenarioError(f"{path}: extends: a file name (got {parent!r})")
        target = (path.parent / parent).resolve()
        if not target.is_file():
            raise ScenarioError(f"{path}: extends: no such scenario file {parent!r} "
                                f"(looked for {target})")
        data = _merge(_read(target, (*seen, path)), data)
    return data


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    data = _read(path.resolve())
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(describe_errors(path, exc)) from None


def describe_errors(path: Path, exc: ValidationError) -> str:
    """One line per problem: file, dotted key, what is wrong."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key (typo?)" if err["type"] == "extra_forbidden" else \
            err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)
