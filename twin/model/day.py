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
from simpy.events import ProcessGenerator, Timeout

from services.rules.calling import HOLDER, REVISIT, WALK_IN
from twin.model.engine import DayEnvironment, Visit
from twin.model.names import WALKS, StationName, Walk
from twin.model.patients import Patients, appointment_arrivals, draw_patients
from twin.model.resources import CallingQueue, FastResource, FifoLine
from twin.model.streams import Streams
from twin.network.scripted import OK, Network, ScriptedNetwork
from twin.scenario.schema import Scenario


@dataclass(slots=True)
class Station:
    name: str
    resource: FastResource | FifoLine
    capacity: int
    priority: bool = False
    busy: float = 0.0
    queue_samples: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # each use's queue wait
    shifts: list[tuple[float, int]] = field(default_factory=list)  # (time, servers open)
    fifo: bool = False  # a ``FifoLine``: waits computed at arrival

    @property
    def uses(self) -> int:
        return len(self.waits)

    @property
    def wait_sum(self) -> float:
        return sum(self.waits)

    def staffed_minutes(self, start: float, end: float) -> float:
        """Server-minutes open between two times of day (the shifts applied)."""
        open_now, total, t = self.capacity, 0.0, start
        for at, servers in self.shifts:
            if at <= start:
                open_now = servers
                continue
            if at >= end:
                break
            total += open_now * (at - t)
            open_now, t = servers, at
        return total + open_now * max(end - t, 0.0)


def _open(servers: int, capacity: int, k: int, queues: int) -> int:
    """Servers of queue ``k`` open when ``servers`` of the department's are: all of a
    shared queue's, or (named doctors, one each) the first ``servers`` doctors."""
    return servers if queues == 1 else int(k < servers) * capacity


START_WINDOW = 1.0  # minutes: the source starts every patient arriving this soon at once


class RunawayDay(RuntimeError):
    """A day that does not end: some station's capacity is far below its demand."""

    @classmethod
    def of(cls, day: HospitalDay) -> RunawayDay:
        worst = max(day.stations.values(), key=lambda st: len(st.resource))
        limit = day.sc.day.closing + day.sc.day.max_overtime_h * 60
        still = day._left + sum(1 for d in day.depart if d == d and d > limit)
        return cls(f"the day had not ended {day.sc.day.max_overtime_h:g} h after closing "
                   f"({still} patients still in, {len(worst.resource)} waiting at "
                   f"'{worst.name}' with {worst.capacity} server(s)): its capacity is far "
                   "below its demand; raise it or lower daily_visits")


class HospitalDay:
    """One terminating run: arrivals over the day, every patient finished."""

    def __init__(self, sc: Scenario, replication: int, hospital: int = 0,
                 keep_steps: bool = True, sample_every: float | None = 5.0,
                 record_demand: bool = False, network: Network | None = None,
                 absent: np.ndarray | None = None) -> None:
        """``absent``: the patients who do not come, whichever the flow (default: those
        who book online and never come). A counterfactual day is given its scenario day's
        absent patients, so both flows see the same people. ``sample_every``: minutes
        between samples of the queues' lengths (``None``: none taken, as a province's
        rows do not read them)."""
        self.sc = sc
        # the card network the online flow calls (see twin/network/): always up, the
        # scenario's fault windows, or the real stack (co-simulation)
        self.network = network or (ScriptedNetwork(sc.faults) if sc.faults else Network())
        self.fallbacks = {"window_checkin": 0, "manual_id": 0, "window_payment": 0}
        self._window_paid: set[tuple[int, int]] = set()
        self.replication = replication
        self.streams = Streams(sc.seed, replication, hospital)
        self.p = draw_patients(sc, self.streams)
        self.start_at, self.slot_start, self.booked = appointment_arrivals(sc, self.p)
        self.absent = self.p.online & self.p.no_show if absent is None else absent
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
        self.env = DayEnvironment()
        r = sc.resources
        env = self.env
        self.stations: dict[str, Station] = {}

        def station(name: str, capacity: int, priority: bool = False,
                    calling: bool = False) -> Station:
            cap = max(capacity, 1)
            res: FastResource | FifoLine = \
                CallingQueue(env, cap, sc.online.holders_per_walk_in) if calling \
                else FastResource(env, cap, True) if priority else FifoLine(env, cap)
            self.stations[name] = Station(name, res, cap, priority or calling,
                                          fifo=isinstance(res, FifoLine))
            return self.stations[name]

        self.reg_window = station(StationName.REGISTRATION_WINDOW, r.registration_windows)
        self.kiosks = station(StationName.KIOSK, r.kiosks)
        self.pay_window = station(StationName.PAYMENT_WINDOW, r.payment_windows)
        self.pharmacy = station(StationName.PHARMACY_WINDOW, r.pharmacy_windows)
        self.lab = station(StationName.LAB, r.lab_stations)
        self.imaging = station(StationName.IMAGING, r.imaging_rooms)
        self.scanners = station(StationName.CHECKIN_SCANNER, r.checkin_scanners)
        # a department's doctors: one queue, or (named doctors) one queue per doctor
        self.doctor_queues: list[list[Station]] = [
            [station(StationName.NAMED_DOCTOR.format(department=d.name, number=k + 1), 1,
                     calling=True) for k in range(d.doctors)] if d.named_doctors
            else [station(StationName.DOCTORS.format(department=d.name), d.doctors,
                          calling=True)]
            for d in sc.hospital.departments]
        self.doctors = [st for queues in self.doctor_queues for st in queues]
        by_key = {"registration_windows": [self.reg_window], "kiosks": [self.kiosks],
                  "payment_windows": [self.pay_window], "pharmacy_windows": [self.pharmacy],
                  "lab_stations": [self.lab], "imaging_rooms": [self.imaging],
                  "checkin_scanners": [self.scanners], "doctors": self.doctors}
        for key, changes in r.shifts.items():
            if key == "doctors":  # a share of each department's doctors
                for queues in self.doctor_queues:
                    n = sum(st.capacity for st in queues)
                    for k, st in enumerate(queues):
                        st.shifts = [(at, _open(round(v * n), st.capacity, k, len(queues)))
                                     for at, v in changes.items()]
                        env.process(self._shift(st))
                continue
            for st in by_key[key]:
                st.shifts = [(at, int(v)) for at, v in changes.items()]
                if isinstance(st.resource, FifoLine):
                    st.resource.set_schedule(st.shifts)
                else:
                    env.process(self._shift(st))
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
    def _use(self, pid: int, st: Station, service: float, step: str, priority: int = 1):
        """Queue at a station and be served; returns the queue wait.

        Time the patient spends on their own (walks, waiting for results, the phone, and
        this service) is not slept step by step: it accumulates in ``ahead`` and is slept
        in one go before the next queue. At a first-come, first-served station the wait
        is computed at arrival (``FifoLine``: no events at all); at the doctors' calling
        queue the patient waits for a call and the server is released by a callback at
        the end of the service. Same clock, fewer process wake-ups (see ``make bench``)."""
        env, own = self.env, self.ahead
        if own[pid] > 0:
            yield Timeout(env, own[pid])
        t_q = env.now
        res = st.resource
        if st.fifo:  # first come, first served: the wait is computed
            start = res.assign(t_q, service)  # type: ignore[union-attr]
            wait = start - t_q
            own[pid] = wait + service
        else:
            waiting = res.acquire(priority)  # type: ignore[union-attr]
            if waiting is None:
                wait = 0.0
            else:
                yield waiting
                wait = env.now - t_q
            start = env.now
            Timeout(env, service).callbacks.append(res.release)  # type: ignore
            own[pid] = service
        st.busy += service
        st.waits.append(wait)
        if self.keep_steps:
            self.steps.append((pid, step, st.name, t_q, wait, service))
        if self.demand is not None:
            self.demand.append((start, step, pid))
        return wait

    def _consult(self, pid: int, doctors: Station, minutes: float, step: str, priority: int,
                 scan: float = 0.0):
        """See a doctor: the queue is the wait for the doctor, the consultation (not the
        code scan before it) the doctor's time. Returns the wait."""
        wait = yield from self._use(pid, doctors, minutes + scan, step, priority)
        self.w_doc[pid] += wait
        self.doc_time[pid] += minutes
        if self.demand is not None and self.q.online[pid]:  # the phone shows the queue
            joined, every = self.env.now - wait, self.sc.online.queue_poll_every
            self.demand.extend((joined + every * k, "kiosk_queue", pid)
                               for k in range(1, int(wait // every) + 1))
        return wait

    def _online_consult(self, pid: int, doctors: Station, minutes: float, step: str,
                        kind: int):
        """A card user's consultation: the code scanned, the hospital's service told of
        the call (co-simulation)."""
        wait = yield from self._consult(pid, doctors, minutes, step, kind,
                                        self._scan(pid, step))
        self.network.seen(pid, self.env.now - wait, self.env.now, revisit=step == "revisit")

    def _walk(self, pid: int, k: Walk) -> None:
        self.walks[pid] += 1
        self.ahead[pid] += self.q.walk[pid * WALKS + k]

    def _spend(self, pid: int, minutes: float) -> None:
        """Time on the patient's own (results turnaround, paying on the phone)."""
        self.ahead[pid] += minutes

    # ---------------------------------------------------------------- the two flows
    def traditional(self, pid: int) -> ProcessGenerator:
        """The traditional outpatient visit:

        1. walk in and register at a kiosk (kiosk users) or a registration window;
        2. walk to the department and see a doctor;
        3. if a test is ordered: pay (kiosk or window), walk to the lab or imaging, wait
           for the results, print the report at a kiosk, and see the doctor again
           (revisits go first);
        4. if a prescription is written: pay, walk to the pharmacy, and be dispensed.
        """
        p = self.q
        self._walk(pid, Walk.TO_REGISTRATION)
        if p.kiosk[pid] and self.sc.resources.kiosks > 0:
            self.w_reg[pid] += yield from self._use(pid, self.kiosks, p.reg_kiosk[pid],
                                                    "registration")
            self.kiosk_uses[pid] += 1
        else:
            self.w_reg[pid] += yield from self._use(pid, self.reg_window, p.reg_window[pid],
                                                    "registration")
        self._walk(pid, Walk.TO_DOCTOR)
        doctors = self._doctor_of(pid)
        yield from self._consult(pid, doctors, p.consult1[pid], "doctor", WALK_IN)
        if p.test[pid]:
            self._walk(pid, Walk.TO_FIRST_PAYMENT)
            yield from self._pay_traditional(pid, 0)
            self._walk(pid, Walk.TO_TEST)
            yield from self._use(pid, self.lab if p.lab[pid] else self.imaging,
                                 p.test_service[pid], "lab" if p.lab[pid] else "imaging")
            self._spend(pid, p.turnaround[pid])
            self._walk(pid, Walk.TO_REPORT)
            if self.sc.resources.kiosks > 0:
                yield from self._use(pid, self.kiosks, p.report[pid], "report")
                self.kiosk_uses[pid] += 1
            else:  # no kiosks: reports are printed at a registration window
                yield from self._use(pid, self.reg_window, p.report[pid], "report")
            self._walk(pid, Walk.TO_REVISIT)
            yield from self._consult(pid, doctors, p.consult2[pid], "revisit", REVISIT)
        if p.rx[pid]:
            self._walk(pid, Walk.TO_SECOND_PAYMENT)
            yield from self._pay_traditional(pid, 1)
            self._walk(pid, Walk.TO_PHARMACY)
            self.w_pharm[pid] += yield from self._use(pid, self.pharmacy, p.dispense[pid],
                                                      "pharmacy")
        self._done(pid)

    def _pay_traditional(self, pid: int, k: int):
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

    def _phone_pay(self, pid: int, k: int):
        """Pay on the phone; to a window when the phone's own payment fails (before the
        card network is asked) or the network does."""
        p = self.q
        if self.demand is not None:
            self.demand.append((self.env.now + self.ahead[pid], "phone", pid))
        failed_on_phone = p.phone_fail[2 * pid + k]
        out = OK if failed_on_phone else \
            self.network.pay(pid, self.env.now + self.ahead[pid], bool(p.insured[pid]), k)
        self._spend(pid, p.phone_pay[2 * pid + k] + out.latency_min)
        if not out.ok:
            self.fallbacks["window_payment"] += 1
        if failed_on_phone or not out.ok:  # to a window, as a real hospital would
            self._window_paid.add((pid, k))
            self._walk(pid, Walk.TO_FIRST_PAYMENT if k == 0 else Walk.TO_SECOND_PAYMENT)
            self.w_pay[pid] += yield from self._use(pid, self.pay_window, p.pay[2 * pid + k],
                                                    "payment")

    def online(self, pid: int) -> ProcessGenerator:
        """The online fused-card visit (booked ahead on the phone):

        1. walk to the department and check in by scanning the one code (a window and a
           temporary card when the network fails);
        2. wait to be called at the appointment's slot, then see the doctor (code scanned);
        3. if a test is ordered: pay on the phone (a window when it fails), walk to the lab
           or imaging, results pushed to the phone, walk back for the revisit;
        4. if a prescription is written: pay on the phone, walk to the pharmacy, and be
           dispensed (prepaid prescriptions are ready faster).
        """
        p = self.q
        if self.demand is not None:  # booked on the phone ahead, at that time of day
            arrived = self.env.now + self.ahead[pid]
            self.demand.append(((arrived - self.sc.online.booking_lead) % (24 * 60),
                                "kiosk_booking", pid))
        self._walk(pid, Walk.TO_DOCTOR)
        out = self.network.scan(pid, "checkin", self.env.now + self.ahead[pid])
        if out.ok:
            self.network.checked_in(pid, self.env.now + self.ahead[pid])
            self.w_reg[pid] += yield from self._use(pid, self.scanners,
                                                    p.checkin[pid] + out.latency_min, "checkin")
        else:  # no code check-in: register at a window with a temporary card
            self.fallbacks["window_checkin"] += 1
            self.w_reg[pid] += yield from self._use(pid, self.reg_window, p.reg_window[pid]
                                                    + out.latency_min, "registration")
        doctors = self._doctor_of(pid)
        early = self.slots[pid] - (self.env.now + self.ahead[pid])
        if early > 0:  # queue-calling calls an appointment at its slot, not before
            self._spend(pid, early)
            self.w_doc[pid] += early
        yield from self._online_consult(pid, doctors, p.consult1[pid], "doctor", HOLDER)
        if p.test[pid]:
            yield from self._phone_pay(pid, 0)
            self._walk(pid, Walk.TO_TEST)
            step = "lab" if p.lab[pid] else "imaging"
            yield from self._use(pid, self.lab if p.lab[pid] else self.imaging,
                                 p.test_service[pid] + self._scan(pid, step), step)
            self._spend(pid, p.turnaround[pid])  # results pushed to the phone
            self.network.results(pid, step, self.env.now + self.ahead[pid])
            if self.demand is not None:  # and read there
                self.demand.append((self.env.now + self.ahead[pid], "kiosk_report", pid))
            self._walk(pid, Walk.TO_REVISIT)
            yield from self._online_consult(pid, doctors, p.consult2[pid], "revisit", REVISIT)
        if p.rx[pid]:
            yield from self._phone_pay(pid, 1)
            self._walk(pid, Walk.TO_PHARMACY)
            factor = 1.0 if (pid, 1) in self._window_paid else \
                self.sc.online.prepaid_dispense_factor
            self.w_pharm[pid] += yield from self._use(pid, self.pharmacy, p.dispense[pid]
                                                      * factor + self._scan(pid, "pharmacy"),
                                                      "pharmacy")
        self._done(pid)

    def _done(self, pid: int) -> None:
        self.depart[pid] = self.env.now + self.ahead[pid]
        self._left -= 1
        if self._left == 0 and not self.finished.triggered:
            self.finished.succeed()

    def _doctor_of(self, pid: int) -> Station:
        """The queue a patient joins: the department's, or their chosen doctor's."""
        queues = self.doctor_queues[self.q.dept[pid]]
        return queues[min(int(self.q.doctor_pick[pid] * len(queues)), len(queues) - 1)]

    # ---------------------------------------------------------------- running
    def _shift(self, st: Station):
        """Open and close a station's servers at the times its shifts say."""
        res = st.resource
        assert isinstance(res, FastResource), "a FifoLine takes its schedule at once"
        for at, servers in st.shifts:
            if at > self.env.now:
                yield self.env.timeout(at - self.env.now)
            res.set_capacity(servers)

    def _source(self):
        env, p = self.env, self.q
        start_at = self.start_at.tolist()
        absent = self.absent.tolist()
        for pid in np.argsort(self.start_at, kind="stable").tolist():
            if absent[pid]:
                continue
            delay = start_at[pid] - env.now
            if delay > START_WINDOW:
                yield env.timeout(delay)
                delay = 0.0
            self.ahead[pid] = delay
            Visit(env, self.online(pid) if p.online[pid] else self.traditional(pid))

    def _monitor(self, every: float):
        env = self.env
        while not self.finished.triggered:
            for st in self.stations.values():
                st.queue_samples.append(len(st.resource))
            yield env.timeout(every)

    def run(self) -> HospitalDay:
        p = self.p
        shows = int(np.count_nonzero(~self.absent))
        self._left = shows
        if shows == 0:
            self.finished.succeed()
        first = float(self.start_at.min()) if p.n else self.sc.day.arrivals_from
        self.monitor_start = min(first, self.sc.day.arrivals_from)
        self.env.process(self._source())
        if self.monitor_start > self.env.now:
            self.env.run(until=self.monitor_start)
        if self.sample_every is not None:
            self.env.process(self._monitor(self.sample_every))
        # the cyclic collector would walk every queued event and recorded step again and
        # again as they pile up; a day's run frees what it made by reference counting,
        # and the collector catches any cycle once it is back on
        collecting = gc.isenabled()
        gc.disable()
        limit = self.sc.day.closing + self.sc.day.max_overtime_h * 60
        try:
            self.env.run_until_triggered(self.finished,
                                         self.env.timeout(max(limit - self.env.now, 0.0)))
        finally:
            if collecting:
                gc.enable()
        if not self.finished.triggered:
            raise RunawayDay.of(self)
        # the last patients' own time (walk out, last service, and at a first-come,
        # first-served station its wait) is not slept: see _use
        self.end = max([self.env.now, *(d for d in self.depart if d == d)])
        if self.end > limit:  # the computed waits run past the day's last hour
            raise RunawayDay.of(self)
        return self
