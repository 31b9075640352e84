"""Co-simulation: the twin's online patients run through the real card stack.

Every online patient of the simulated day is a real resident, seeded in bulk before the
run with a real EHC (bound to their e-SSC when insured). Each scan in the model is a real
code fetch and verification through the SDK, each phone payment a real fused
verification, fee upload and settlement with its payment; the wall-clock latency of the
calls enters the model as time at the station, and a refusal or silence makes the
patient fall back as a real hospital would. The simulated clock and the wall clock stay
apart: the stack checks real time, the model runs on simulated minutes. The scenario's
fault windows are injected into the stack itself (its outage drill) while the simulated
clock is inside them, so the model reacts to real errors, not scripted ones.

The hospital's outpatient service takes part too (``cosim_hospital``): the online
patients book their slots before the day, check in by scan, are called, get their
results and pay their bills through it, on drill sessions whose clock follows the model.

The stack's records must mirror the day: ``check`` compares the usage records and
settlements the stack holds for the day's hospital, and the hospital service's bookings,
check-ins, calls, reports and bills, with the model's own count of calls, and checks that
the ledger reconciles and the audit chains hold."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from services.rules.ages import AGE_GROUPS
from services.sdk import (
    AdminClient,
    ChannelClient,
    SdkError,
    TerminalClient,
    cst_days_since,
    cst_today_text,
    fuse_all,
    insured_record,
    residents_of_groups,
)
from twin.experiments.cosim_hospital import HospitalFloor
from twin.experiments.outage import plot, summarise
from twin.experiments.paired import counterfactual_day
from twin.model.day import HospitalDay
from twin.network.scripted import PAYMENT_STEP, SCAN_STEPS, Network, Outcome, active
from twin.results.kpis import kpis, queue_frame
from twin.scenario.schema import Fault, Scenario

# a department code per kind of reading terminal of the co-simulated hospital
DEPARTMENTS = {"checkin": "0101", "doctor": "0301", "revisit": "0301", "lab": "0401",
               "imaging": "0402", "pharmacy": "0501", "payment": "0601"}


@dataclass
class Ledger:
    """What the live network did, to check the stack against."""

    verified: dict[int, int] = field(default_factory=dict)  # step code -> 200 answers
    settled: int = 0
    uninsured_pays: int = 0  # paid from the phone's wallet: no card-network call
    latencies_ms: list[float] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)

    def verify_ok(self, step_code: int) -> None:
        self.verified[step_code] = self.verified.get(step_code, 0) + 1

    def refused(self, code: str) -> None:
        self.refusals[code] = self.refusals.get(code, 0) + 1


class LiveNetwork(Network):
    def __init__(self, url: str, admin_token: str, faults: list[Fault],
                 institution: str | None = None, real_delays: bool = False) -> None:
        """A 'slow' fault's delay is added to each call's simulated time; the stack is
        made to sleep it for real only with ``real_delays`` (it costs wall-clock time on
        every call: 3 s x thousands of calls). 'down' faults always go to the stack."""
        super().__init__()
        self.real_delays = real_delays
        self.delay_min = 0.0  # the simulated delay of the calls made now
        self.url = url
        self.admin = AdminClient(url, admin_token, timeout_s=60)
        self.faults = faults
        self.institution = institution or "3399" + f"{secrets.randbelow(10**8):08d}"
        self.cards: dict[int, tuple[str, bool]] = {}  # pid -> (card ID, bound to an e-SSC)
        self.first_day = cst_today_text()  # set again at seeding: the run's first CST day
        self.done = Ledger()
        self._state: tuple = ((0, False), (0, False))
        self.app: ChannelClient | None = None
        self.terms: dict[str, TerminalClient] = {}
        self.floor = HospitalFloor(url, admin_token)

    # ------------------------------------------------------------------ seeding
    def seed(self, day: HospitalDay, progress=None) -> int:
        """A real resident with a real card for every online patient (the no-shows book
        too), and their bookings at the hospital's service."""
        p = day.p
        self.first_day = cst_today_text()  # the run's records may reach past midnight
        pids = [i for i in range(p.n) if p.online[i]]
        people = residents_of_groups([AGE_GROUPS[p.age[i]] for i in pids],  # as old as
                                     seed=day.sc.seed * 7 + day.replication)  # the patient
        admin = self.admin
        for i in range(0, len(people), 500):
            admin.add_residents([{"id_type": "01", "id_number": r.id_number, "name": r.name}
                                 for r in people[i:i + 500]])
        insured = [insured_record(r, 10**9 + i) for i, (pid, r) in
                   enumerate(zip(pids, people, strict=True)) if p.insured[pid]]
        for i in range(0, len(insured), 500):
            admin.add_insured(insured[i:i + 500])
        admin.add_hospital(self.institution, f"Co-simulated {day.sc.name}", "330100")
        by_dept: dict[str, TerminalClient] = {}
        for dept in sorted(set(DEPARTMENTS.values())):
            cred = admin.add_shared_terminal(self.institution, dept, 1)
            by_dept[dept] = TerminalClient(self.url, cred["terminal_id"], cred["secret"],
                                           city_code="330100", timeout_s=60)
        self.terms = {step: by_dept[dept] for step, dept in DEPARTMENTS.items()}
        app_cred = admin.add_shared_app(f"co-simulation {day.sc.name}", strong_realname=True)
        self.app = ChannelClient(self.url, app_cred["app_key"], app_cred["app_secret"],
                                 timeout_s=60)
        for pid, r in zip(pids, people, strict=True):
            card = self.app.apply("01", r.id_number, r.name)
            self.cards[pid] = (card["card_id"], bool(p.insured[pid]))
            if progress:
                progress(1)
        fuse_all(admin, admin)  # the insured patients' two cards bound
        self.floor.open(day, {pid: card for pid, (card, _) in self.cards.items()})
        return len(pids)

    # ------------------------------------------------------------------ faults
    def _faults_at(self, now: float) -> None:
        """Set the stack's outage drill to what the scenario says for ``now``."""
        ehc = essc = (0, False)
        self.delay_min = max([f.delay_ms / 60_000 for f in active(self.faults, now)
                              if f.mode == "slow" and f.target == "card_network"] or [0.0])
        for f in active(self.faults, now):
            if f.mode == "slow" and not self.real_delays:
                continue  # simulated: added to the call's time (see _minutes), not slept
            state = (f.delay_ms, False) if f.mode == "slow" else (0, True)
            essc = (max(essc[0], state[0]), essc[1] or state[1])
            if f.target == "card_network":
                ehc = (max(ehc[0], state[0]), ehc[1] or state[1])
        wanted = (ehc, essc)
        if wanted != self._state:
            self.admin.set_faults(*ehc, system="ehc")
            self.admin.set_faults(*essc, system="essc")
            self._state = wanted

    def _minutes(self, t0: float) -> float:
        """The call's time in the model: measured, plus a slow fault's simulated delay
        (unless the stack slept it for real)."""
        return _minutes(t0, self.done) + (0.0 if self.real_delays else self.delay_min)

    def close(self) -> None:
        self.floor.close()
        if self._state != ((0, False), (0, False)):
            self.admin.set_faults(system="ehc")
            self.admin.set_faults(system="essc")
            self._state = ((0, False), (0, False))

    # ------------------------------------------------------------------ calls
    def scan(self, pid: int, step: str, now: float) -> Outcome:
        self._faults_at(now)
        t0 = time.perf_counter()
        try:
            answer = self.terms[step].verify(self._code(pid), step=SCAN_STEPS[step])
            self.done.verify_ok(SCAN_STEPS[step])
            out = Outcome(True, self._minutes(t0), bool(answer.get("partial")))
        except (SdkError, httpx.HTTPError) as exc:
            self.done.refused(getattr(exc, "code", type(exc).__name__))
            out = Outcome(False, self._minutes(t0))
        return self.log.scan(out)

    def _code(self, pid: int) -> str:
        card_id, bound = self.cards[pid]
        assert self.app is not None, "seed() first"
        return self.app.qrcode(card_id, kind="fused" if bound else "dynamic")["qr_text"]

    def pay(self, pid: int, now: float, insured: bool, k: int = 0) -> Outcome:
        """The visit's orders charged and billed at the hospital; insured: a fused
        verification at the payment step and the bill settled through the e-SSC (the cash
        part through the payment gateway). The uninsured pay their own bill through the
        phone's wallet, which the card network does not see. A failed phone payment is
        paid at a window."""
        card_id, bound = self.cards[pid]
        bill = self.floor.bill(pid, card_id, k)
        if not bound:
            self.done.uninsured_pays += 1
            if bill is not None:
                self.floor.paid_elsewhere(bill, card_id, "self_pay")
            return self.log.pay(Outcome(True))
        self._faults_at(now)
        t0 = time.perf_counter()
        term = self.terms["payment"]
        ok = False
        try:
            answer = term.verify(self._code(pid), step=PAYMENT_STEP)
            self.done.verify_ok(PAYMENT_STEP)
            token = (answer.get("essc") or {}).get("ec_token")
            if not token:
                self.done.refused("PARTIAL_NO_VOUCHER")
            elif bill is None:
                self.done.refused("NO_BILL")
            else:
                state = self.floor.settle(term, card_id, token, bill)["state"]
                ok = state == "settled"
                if not ok:  # fail closed: not known to be paid, pay at a window
                    self.done.refused(f"SETTLEMENT_{state.upper()}")
        except (SdkError, httpx.HTTPError) as exc:
            self.done.refused(getattr(exc, "code", type(exc).__name__))
        if ok:
            self.done.settled += 1
        elif bill is not None:
            self.floor.paid_elsewhere(bill, card_id, "window")
        return self.log.pay(Outcome(ok, self._minutes(t0)))

    # ------------------------------------------------------------------ the hospital
    def checked_in(self, pid: int, now: float) -> None:
        self.floor.checked_in(pid, self.cards[pid][0], now)

    def seen(self, pid: int, joined: float, called: float, revisit: bool) -> None:
        self.floor.seen(pid, self.cards[pid][0], joined, called, revisit)

    def results(self, pid: int, step: str, now: float) -> None:
        self.floor.results(self.cards[pid][0], step)

    # ------------------------------------------------------------------ the check
    def check(self) -> dict[str, Any]:
        """The stack's records of the day's hospital against what the model did."""
        records: list[dict] = []
        term = self.terms["checkin"]
        after = 0
        while batch := term.usage_records(after_id=after, limit=1000):
            records += batch
            after = batch[-1]["id"]
        by_step: dict[int, int] = {}
        for r in records:
            by_step[r["step"]] = by_step.get(r["step"], 0) + 1
        days = cst_days_since(self.first_day)  # settlements and audits keep CST days
        reports = [self.admin.reconcile_settlements(day) for day in days]
        settled = sum(r["by_institution"].get(self.institution, {}).get("settled", 0)
                      for r in reports)
        audits = {s: all(self.admin.audit(day, s)["clean"] for day in days)
                  for s in ("ehc", "essc")}
        out = {
            "institution": self.institution,
            "usage_records": len(records), "verifications_ok": sum(self.done.verified.values()),
            "usage_records_by_step": {str(k): v for k, v in sorted(by_step.items())},
            "verifications_by_step": {str(k): v for k, v in sorted(self.done.verified.items())},
            "settled_on_stack": settled, "settled_by_model": self.done.settled,
            "model_scans_ok": self.log.scans_ok, "model_pays_ok": self.log.pays_ok,
            "ledger_clean": all(r["clean"] for r in reports), "audit_clean": audits,
            "refusals": self.done.refusals,
            "hospital": self.floor.check({pid: c for pid, (c, _) in self.cards.items()}),
        }
        out["uninsured_pays"] = self.done.uninsured_pays
        # one usage record per successful scan of the model and per payment-step
        # verification; one settled visit per insured phone payment the model saw succeed
        payments = self.done.verified.get(PAYMENT_STEP, 0)
        out["match"] = (by_step == self.done.verified
                        and len(records) == self.log.scans_ok + payments
                        and settled == self.done.settled
                        == self.log.pays_ok - self.done.uninsured_pays
                        and out["ledger_clean"] and all(audits.values())
                        and out["hospital"]["match"])
        return out


def _minutes(t0: float, ledger: Ledger) -> float:
    ms = (time.perf_counter() - t0) * 1000
    ledger.latencies_ms.append(ms)
    return ms / 60_000


def run_cosim(sc: Scenario, url: str, admin_token: str, out: Path,
              progress=None, real_delays: bool = False) -> dict[str, Any]:
    """One co-simulated day (replication 0) against the stack at ``url``; with faults,
    also the same day without them (no stack) for the outage comparison."""
    out.mkdir(parents=True, exist_ok=True)
    live = LiveNetwork(url, admin_token, sc.faults, real_delays=real_delays)
    day = HospitalDay(sc, 0, network=live)
    seeded = live.seed(day, progress)
    t0 = time.perf_counter()
    try:
        day.run()
    finally:
        live.close()
    wall = time.perf_counter() - t0
    lat = np.asarray(live.done.latencies_ms or [0.0])
    result: dict[str, Any] = {
        "scenario": sc.name, "url": url, "online_patients": seeded, "wall_s": wall,
        "patients_per_s": seeded / wall if wall else 0.0, "calls": len(live.done.latencies_ms),
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                       "max": float(lat.max())},
        "fallbacks": day.fallbacks, "kpis": kpis(day), "check": live.check()}
    queues = [queue_frame(day).assign(replication=0, run="outage")]
    if sc.faults:
        base = counterfactual_day(sc, 0, against="no fault")
        queues.append(queue_frame(base).assign(replication=0, run="no fault"))
        paired = {"queues": pd.concat(queues, ignore_index=True),
                  "kpis": pd.DataFrame([{"replication": 0,
                                         "visit_time_outage": kpis(day)["visit_time"],
                                         "visit_time_no_fault": kpis(base)["visit_time"]}]),
                  "fallbacks": pd.DataFrame([day.fallbacks])}
        result["outage"] = summarise(sc, paired)
        result["outage"]["plot"] = str(plot(sc, paired, out / "outage.png"))
    (out / "cosim.json").write_text(json.dumps(result, indent=1, default=float))
    return result
