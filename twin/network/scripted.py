"""The card network as the hospital model sees it: each scan of an online patient's
code and each phone payment is a call that succeeds (after some latency) or fails, and
the patient falls back when it fails. Three implementations:

- ``Network``: always answers at once (the plain twin; results as without a network);
- ``ScriptedNetwork``: the scenario's fault windows, on the simulated clock;
- ``twin.experiments.cosim.LiveNetwork``: real calls to the card stack through the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.sdk import Step
from twin.scenario.schema import Fault

# the step of care each station scans an online patient's code at
SCAN_STEPS: dict[str, int] = {station: int(step) for station, step in {
    "checkin": Step.REGISTRATION, "doctor": Step.DIAGNOSIS, "revisit": Step.DIAGNOSIS,
    "lab": Step.EXAMINATION, "imaging": Step.EXAMINATION, "pharmacy": Step.PHARMACY,
    "payment": Step.PAYMENT}.items()}
PAYMENT_STEP = int(Step.PAYMENT)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    latency_min: float = 0.0
    partial: bool = False  # the EHC identity answered, the e-SSC side did not


OK = Outcome(True)


@dataclass
class CallLog:
    """What the model asked of the network, for checks against the stack's records."""

    scans: int = 0
    scans_ok: int = 0
    partial: int = 0
    pays: int = 0
    pays_ok: int = 0

    def scan(self, out: Outcome) -> Outcome:
        self.scans += 1
        self.scans_ok += out.ok
        self.partial += out.partial
        return out

    def pay(self, out: Outcome) -> Outcome:
        self.pays += 1
        self.pays_ok += out.ok
        return out


class Network:
    """Always up, no latency. The hospital's outpatient service is told of the online
    patients' check-ins, calls and results (``checked_in``, ``seen``, ``results``): only
    the co-simulation's network acts on them."""

    def __init__(self) -> None:
        self.log = CallLog()

    def scan(self, pid: int, step: str, now: float) -> Outcome:
        return self.log.scan(OK)

    def pay(self, pid: int, now: float, insured: bool, k: int = 0) -> Outcome:
        """The ``k``-th payment of the visit (0: tests, 1: drugs) from the phone."""
        return self.log.pay(OK)

    def checked_in(self, pid: int, now: float) -> None:
        """Checked in at the department by a scan of the code."""

    def seen(self, pid: int, joined: float, called: float, revisit: bool) -> None:
        """Called to the doctor at ``called``, having joined the queue at ``joined``."""

    def results(self, pid: int, step: str, now: float) -> None:
        """A lab's or imaging's results are ready and pushed to the phone."""

    def close(self) -> None:
        """Called once the day is over (live networks clear their injected faults)."""


def active(faults: list[Fault], now: float) -> list[Fault]:
    return [f for f in faults if f.start <= now < f.end]


class ScriptedNetwork(Network):
    """The scenario's fault windows on the simulated clock (no real calls)."""

    def __init__(self, faults: list[Fault]) -> None:
        super().__init__()
        self.faults = faults

    def _state(self, now: float) -> tuple[bool, bool, float]:
        """(card network up, e-SSC side up, added latency in minutes) at ``now``."""
        ehc = essc = True
        delay = 0.0
        for f in active(self.faults, now):
            if f.mode == "slow":
                delay += f.delay_ms / 60_000
            elif f.target == "card_network":
                ehc = essc = False
            else:
                essc = False
        return ehc, essc, delay

    def scan(self, pid: int, step: str, now: float) -> Outcome:
        ehc, essc, delay = self._state(now)
        return self.log.scan(Outcome(ehc, delay, partial=ehc and not essc))

    def pay(self, pid: int, now: float, insured: bool, k: int = 0) -> Outcome:
        ehc, essc, delay = self._state(now)
        return self.log.pay(Outcome(ehc and (essc or not insured), delay))
