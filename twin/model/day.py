"""One hospital's outpatient day in SimPy: the traditional flow and the online
fused-card flow over the same resources.

Every random quantity of every patient is drawn up front, vectorised, from its own named
stream, whether or not the patient's flow uses it: the two flows therefore see the same
patients with the same needs and service times (common random numbers), and a
difference between two runs is the flows' doing, not the dice's.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import simpy

from twin.model.arrivals import nspp_arrivals
from twin.model.resources import FastResource
from twin.model.streams import Streams
from twin.network.scripted import Network, ScriptedNetwork
from twin.scenario.schema import Scenario

WALKS = 8  # walk slots of a journey: traditional uses up to 8, online up to 4
STEP_NAMES = ("registration", "checkin", "doctor", "payment", "lab", "imaging",
              "report", "revisit", "pharmacy")


@dataclass
class Patients:
    """The day's patients, one array per attribute (index = patient ID)."""

    arrival: np.ndarray  # desired arrival (walk-in time), minutes from midnight
    online: np.ndarray
    age: np.ndarray  # 0 child, 1 adult, 2 elderly
    insured: np.ndarray
    dept: np.ndarray
    kiosk: np.ndarray
    reg_window: np.ndarray
    reg_kiosk: np.ndarray
    consult1: np.ndarray
    test: np.ndarray
    lab: np.ndarray  # True lab, False imaging (when test)
    test_service: np.ndarray
    turnaround: np.ndarray
    report: np.ndarray
    consult2: np.ndarray
    rx: np.ndarray
    pay: np.ndarray  # (n, 2)
    dispense: np.ndarray
    walk: np.ndarray  # (n, WALKS)
    checkin: np.ndarray
    phone_pay: np.ndarray  # (n, 2)
    phone_fail: np.ndarray  # (n, 2)
    early: np.ndarray
    call_delay: np.ndarray
    late: np.ndarray
    is_late: np.ndarray
    no_show: np.ndarray

    @property
    def n(self) -> int:
        return len(self.arrival)


def draw_patients(sc: Scenario, streams: Streams) -> Patients:
    d, t, o = sc.demand, sc.times, sc.online
    arrival = nspp_arrivals(streams("arrivals"), sc.day.hourly_profile, sc.day.arrivals_from,
                            sc.day.arrivals_until, d.daily_visits)
    n = len(arrival)

    def u(name: str, shape: int | tuple = n) -> np.ndarray:
        return streams(name).random(shape)

    ages = np.array([d.age_shares.get(k, 0.0) for k in ("child", "adult", "elderly")])
    shares = np.array([dep.share for dep in sc.hospital.departments])
    test = u("tests") < d.test_share
    lab = u("test_kind") < d.lab_share_of_tests
    lab_s, img_s = t.lab_service.sample(streams("lab_service"), n), \
        t.imaging_service.sample(streams("imaging_service"), n)
    lab_t, img_t = t.lab_turnaround.sample(streams("lab_turnaround"), n), \
        t.imaging_turnaround.sample(streams("imaging_turnaround"), n)
    age = np.minimum(np.searchsorted(np.cumsum(ages), u("age"), side="right"), 2)
    walk_factor = np.where(age == 2, o.elderly_walk_factor, 1.0)
    return Patients(
        arrival=arrival,
        online=u("adoption") < d.adoption,
        age=age,
        insured=u("insured") < d.insured_share,
        dept=np.minimum(np.searchsorted(np.cumsum(shares), u("department"), side="right"),
                        len(shares) - 1),
        kiosk=u("kiosk_choice") < sc.resources.kiosk_share,
        reg_window=t.registration_window.sample(streams("registration_window"), n),
        reg_kiosk=t.registration_kiosk.sample(streams("registration_kiosk"), n),
        consult1=t.consult_first.sample(streams("consult_first"), n),
        test=test,
        lab=lab,
        test_service=np.where(lab, lab_s, img_s),
        turnaround=np.where(lab, lab_t, img_t),
        report=t.report_print.sample(streams("report_print"), n),
        consult2=t.consult_revisit.sample(streams("consult_revisit"), n),
        rx=u("prescription") < d.prescription_share,
        pay=t.payment_window.sample(streams("payment_window"), 2 * n).reshape(n, 2),
        dispense=t.pharmacy_dispense.sample(streams("pharmacy_dispense"), n),
        walk=t.walk.sample(streams("walk"), WALKS * n).reshape(n, WALKS) * walk_factor[:, None],
        checkin=t.checkin_scan.sample(streams("checkin_scan"), n),
        phone_pay=t.phone_payment.sample(streams("phone_payment"), 2 * n).reshape(n, 2),
        phone_fail=u("phone_failure", (n, 2)) < o.phone_payment_failure,
        early=o.early.sample(streams("early"), n),
        call_delay=o.call_delay.sample(streams("call_delay"), n),
        late=o.late.sample(streams("late"), n),
        is_late=u("late_share") < o.late_share,
        no_show=u("no_show") < o.no_show_share,
    )


def appointment_arrivals(sc: Scenario, p: Patients) -> tuple[np.ndarray, np.ndarray]:
    """(arrival, appointment time) of every patient. An online patient books the first
    half-hour slot with room at or after the time they would have walked in and gets a
    precise time inside it (the j-th of the slot's places, spread evenly: "precise
    appointment"), then comes early or late around it. A walk-in's appointment time is
    their arrival."""
    arrival = p.arrival.copy()
    slots = p.arrival.copy()
    slot = sc.online.slot_length
    start = sc.day.arrivals_from
    mean_consult = (sc.times.consult_first.mean_minutes
                    + sc.demand.test_share * sc.times.consult_revisit.mean_minutes)
    caps = [max(1, int(dep.doctors * slot / max(mean_consult, 1e-9)))
            for dep in sc.hospital.departments]
    booked: list[dict[int, int]] = [{} for _ in caps]
    for i in np.flatnonzero(p.online):  # arrival order = booking order
        d = int(p.dept[i])
        k = max(0, int((p.arrival[i] - start) // slot))
        while booked[d].get(k, 0) >= caps[d]:
            k += 1
        j = booked[d].get(k, 0)
        booked[d][k] = j + 1
        slot_start = start + k * slot + j * slot / caps[d]
        slots[i] = slot_start + p.call_delay[i]
        arrival[i] = slot_start + p.late[i] if p.is_late[i] else \
            max(0.0, slot_start - p.early[i])
    return arrival, slots


@dataclass(slots=True)
class Station:
    name: str
    resource: FastResource
    capacity: int
    priority: bool = False
    busy: float = 0.0
    uses: int = 0
    wait_sum: float = 0.0
    queue_samples: list[int] = field(default_factory=list)


class HospitalDay:
    """One terminating run: arrivals over the day, every patient finished."""

    def __init__(self, sc: Scenario, replication: int, hospital: int = 0,
                 keep_steps: bool = True, sample_every: float = 5.0,
                 record_demand: bool = False, network: Network | None = None) -> None:
        self.sc = sc
        # the card network the online flow calls (see twin/network.py): always up, the
        # scenario's fault windows, or the real stack (co-simulation)
        self.network = network or (ScriptedNetwork(sc.faults) if sc.faults else Network())
        self.fallbacks = {"window_checkin": 0, "manual_id": 0, "window_payment": 0}
        self._window_paid: set[tuple[int, int]] = set()
        self.replication = replication
        self.streams = Streams(sc.seed, replication, hospital)
        self.p = draw_patients(sc, self.streams)
        self.start_at, self.slot_start = appointment_arrivals(sc, self.p)
        # Python scalars for the event loop: numpy scalars make every time sum in SimPy's
        # heap ten times slower
        # (per-patient rows of the 2-D draws are flattened: index pid * width + k)
        self.q = SimpleNamespace(**{name: getattr(self.p, name).ravel().tolist()
                                    for name in Patients.__dataclass_fields__})
        self.slots = self.slot_start.tolist()
        self.keep_steps = keep_steps
        # (time, step, patient) of every card-network call, for the demand curve
        self.demand: list[tuple[float, str, int]] | None = [] if record_demand else None
        self.sample_every = sample_every
        self.env = simpy.Environment()
        r = sc.resources
        env = self.env
        self.stations: dict[str, Station] = {}

        def station(name: str, capacity: int, priority: bool = False) -> Station:
            cap = max(capacity, 1)
            res = FastResource(env, cap, priority)
            self.stations[name] = Station(name, res, cap, priority)
            return self.stations[name]

        self.reg_window = station("registration window", r.registration_windows)
        self.kiosks = station("kiosk", r.kiosks)
        self.pay_window = station("payment window", r.payment_windows)
        self.pharmacy = station("pharmacy window", r.pharmacy_windows)
        self.lab = station("lab", r.lab_stations)
        self.imaging = station("imaging", r.imaging_rooms)
        self.scanners = station("check-in scanner", r.checkin_scanners)
        self.doctors = [station(f"doctors: {d.name}", d.doctors, priority=True)
                        for d in sc.hospital.departments]
        n = self.p.n
        self.steps: list[tuple] = []
        self.depart = [np.nan] * n
        self.ahead = [0.0] * n  # own time not yet slept (see _use)
        self.w_reg = [0.0] * n
        self.w_pay = [0.0] * n
        self.w_pharm = [0.0] * n
        self.w_doc = [0.0] * n
        self.doc_time = [0.0] * n
        self.walks = [0] * n
        self.kiosk_uses = [0] * n
        self._left = 0
        self.finished: simpy.Event = env.event()

    # ---------------------------------------------------------------- building blocks
    def _use(self, pid: int, st: Station, service: float, step: str, priority: int = 1):  # type: ignore[no-untyped-def]
        """Queue at a station and be served; returns the queue wait.

        Time the patient spends on their own (walks, waiting for results, the phone, and
        this service) is not slept step by step: it accumulates in ``ahead`` and is slept
        in one go before the next queue, and the server is released by a callback at the
        end of the service. Same clock, fewer process wake-ups (see ``make bench``)."""
        env, own = self.env, self.ahead
        if own[pid] > 0:
            yield env.timeout(own[pid])
        t_q = env.now
        res = st.resource
        waiting = res.acquire(priority)
        if waiting is None:
            wait = 0.0
        else:
            yield waiting
            wait = env.now - t_q
        env.timeout(service).callbacks.append(res.release)
        own[pid] = service
        st.busy += service
        st.uses += 1
        st.wait_sum += wait
        if self.keep_steps:
            self.steps.append((pid, step, st.name, t_q, wait, service))
        if self.demand is not None:
            self.demand.append((env.now, step, pid))
        return wait

    def _walk(self, pid: int, k: int) -> None:
        self.walks[pid] += 1
        self.ahead[pid] += self.q.walk[pid * WALKS + k]

    def _spend(self, pid: int, minutes: float) -> None:
        """Time on the patient's own (results turnaround, paying on the phone)."""
        self.ahead[pid] += minutes

    # ---------------------------------------------------------------- the two flows
    def traditional(self, pid: int):  # type: ignore[no-untyped-def]
        p = self.q
        t0 = self.env.now
        self._walk(pid, 0)
        if p.kiosk[pid] and self.sc.resources.kiosks > 0:
            self.w_reg[pid] += yield from self._use(pid, self.kiosks, p.reg_kiosk[pid],
                                                    "registration")
            self.kiosk_uses[pid] += 1
        else:
            self.w_reg[pid] += yield from self._use(pid, self.reg_window, p.reg_window[pid],
                                                    "registration")
        self._walk(pid, 1)
        doctors = self.doctors[p.dept[pid]]
        self.w_doc[pid] += yield from self._use(pid, doctors, p.consult1[pid], "doctor")
        self.doc_time[pid] += p.consult1[pid]
        if p.test[pid]:
            self._walk(pid, 2)
            yield from self._pay_traditional(pid, 0)
            self._walk(pid, 3)
            yield from self._use(pid, self.lab if p.lab[pid] else self.imaging,
                                 p.test_service[pid], "lab" if p.lab[pid] else "imaging")
            self._spend(pid, p.turnaround[pid])
            self._walk(pid, 4)
            yield from self._use(pid, self.kiosks, p.report[pid], "report")
            self.kiosk_uses[pid] += 1
            self._walk(pid, 5)
            self.w_doc[pid] += yield from self._use(pid, doctors, p.consult2[pid], "revisit",
                                                    priority=0)
            self.doc_time[pid] += p.consult2[pid]
        if p.rx[pid]:
            self._walk(pid, 6)
            yield from self._pay_traditional(pid, 1)
            self._walk(pid, 7)
            self.w_pharm[pid] += yield from self._use(pid, self.pharmacy, p.dispense[pid],
                                                      "pharmacy")
        self._done(pid, t0)

    def _pay_traditional(self, pid: int, k: int):  # type: ignore[no-untyped-def]
        """Pricing and payment: kiosk users pay at a kiosk, the others at a window."""
        p = self.q
        if p.kiosk[pid] and self.sc.resources.kiosks > 0:
            self.w_pay[pid] += yield from self._use(pid, self.kiosks, p.pay[2 * pid + k],
                                                    "payment")
            self.kiosk_uses[pid] += 1
        else:
            self.w_pay[pid] += yield from self._use(pid, self.pay_window, p.pay[2 * pid + k],
                                                    "payment")

    def _scan(self, pid: int, step: str) -> float:
        """An online patient's code scanned at a station: the minutes it adds (the
        network's latency, or staff looking the patient up by hand when it fails)."""
        out = self.network.scan(pid, step, self.env.now + self.ahead[pid])
        if out.ok:
            return out.latency_min
        self.fallbacks["manual_id"] += 1
        return self.sc.fallback.manual_id + out.latency_min

    def _phone_pay(self, pid: int, k: int):  # type: ignore[no-untyped-def]
        p = self.q
        if self.demand is not None:
            self.demand.append((self.env.now + self.ahead[pid], "phone", pid))
        out = self.network.pay(pid, self.env.now + self.ahead[pid], bool(p.insured[pid]))
        self._spend(pid, p.phone_pay[2 * pid + k] + out.latency_min)
        if not out.ok:
            self.fallbacks["window_payment"] += 1
        if p.phone_fail[2 * pid + k] or not out.ok:  # to a window, as a real hospital would
            self._window_paid.add((pid, k))
            self._walk(pid, 2 if k == 0 else 6)
            self.w_pay[pid] += yield from self._use(pid, self.pay_window, p.pay[2 * pid + k],
                                                    "payment")

    def online(self, pid: int):  # type: ignore[no-untyped-def]
        p = self.q
        t0 = self.env.now
        self._walk(pid, 1)
        out = self.network.scan(pid, "checkin", self.env.now + self.ahead[pid])
        if out.ok:
            self.w_reg[pid] += yield from self._use(pid, self.scanners,
                                                    p.checkin[pid] + out.latency_min, "checkin")
        else:  # no code check-in: register at a window with a temporary card
            self.fallbacks["window_checkin"] += 1
            self.w_reg[pid] += yield from self._use(pid, self.reg_window, p.reg_window[pid]
                                                    + out.latency_min, "registration")
        doctors = self.doctors[p.dept[pid]]
        early = self.slots[pid] - (self.env.now + self.ahead[pid])
        if early > 0:  # queue-calling calls an appointment at its slot, not before
            self._spend(pid, early)
            self.w_doc[pid] += early
        self.w_doc[pid] += yield from self._use(pid, doctors, p.consult1[pid]
                                                + self._scan(pid, "doctor"), "doctor")
        self.doc_time[pid] += p.consult1[pid]
        if p.test[pid]:
            yield from self._phone_pay(pid, 0)
            self._walk(pid, 3)
            step = "lab" if p.lab[pid] else "imaging"
            yield from self._use(pid, self.lab if p.lab[pid] else self.imaging,
                                 p.test_service[pid] + self._scan(pid, step), step)
            self._spend(pid, p.turnaround[pid])  # results pushed to the phone
            self._walk(pid, 5)
            self.w_doc[pid] += yield from self._use(pid, doctors, p.consult2[pid]
                                                    + self._scan(pid, "revisit"), "revisit",
                                                    priority=0)
            self.doc_time[pid] += p.consult2[pid]
        if p.rx[pid]:
            yield from self._phone_pay(pid, 1)
            self._walk(pid, 7)
            factor = 1.0 if (pid, 1) in self._window_paid else \
                self.sc.online.prepaid_dispense_factor
            self.w_pharm[pid] += yield from self._use(pid, self.pharmacy, p.dispense[pid]
                                                      * factor + self._scan(pid, "pharmacy"),
                                                      "pharmacy")
        self._done(pid, t0)

    def _done(self, pid: int, t0: float) -> None:
        self.depart[pid] = self.env.now + self.ahead[pid]
        self._left -= 1
        if self._left == 0 and not self.finished.triggered:
            self.finished.succeed()

    # ---------------------------------------------------------------- running
    def _source(self):  # type: ignore[no-untyped-def]
        env, p = self.env, self.q
        start_at = self.start_at.tolist()
        for pid in np.argsort(self.start_at, kind="stable").tolist():
            if p.online[pid] and p.no_show[pid]:
                continue
            delay = start_at[pid] - env.now
            if delay > 0:
                yield env.timeout(delay)
            env.process(self.online(pid) if p.online[pid] else self.traditional(pid))

    def _monitor(self):  # type: ignore[no-untyped-def]
        env = self.env
        while not self.finished.triggered:
            for st in self.stations.values():
                st.queue_samples.append(len(st.resource))
            yield env.timeout(self.sample_every)

    def run(self) -> HospitalDay:
        p = self.p
        shows = int(np.count_nonzero(~(p.online & p.no_show)))
        self._left = shows
        if shows == 0:
            self.finished.succeed()
        first = float(self.start_at.min()) if p.n else self.sc.day.arrivals_from
        self.monitor_start = min(first, self.sc.day.arrivals_from)
        self.env = self.env  # resources are bound to this environment
        self.env.process(self._source())
        self.env.run(until=self.monitor_start)
        self.env.process(self._monitor())
        # the cyclic collector would walk every queued event and recorded step again and
        # again as they pile up; a day's run frees what it made by reference counting,
        # and the collector catches any cycle once it is back on
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.env.run(until=self.finished)
        finally:
            if collecting:
                gc.enable()
        # the last patients' own time (walk out, last service) is not slept: see _use
        self.end = max([self.env.now, *(d for d in self.depart if d == d)])
        return self
