"""The patients of a hospital day, drawn up front.

Every random quantity of every patient is drawn vectorised from its own named stream,
whether or not the patient's flow uses it: the two flows therefore see the same patients
with the same needs and service times (common random numbers). Appointment holders get
their slot here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.model.arrivals import nspp_arrivals, rate_function
from twin.model.names import WALKS
from twin.model.streams import Streams
from twin.scenario.schema import Scenario


@dataclass
class Patients:
    """The day's patients, one array per attribute (index = patient ID)."""

    arrival: np.ndarray  # desired arrival (walk-in time), minutes from midnight
    online: np.ndarray
    age: np.ndarray  # 0 child, 1 adult, 2 elderly
    insured: np.ndarray
    shows_code: np.ndarray  # a traditional patient who shows an EHC code at stations
    dept: np.ndarray
    doctor_pick: np.ndarray  # in [0, 1): which doctor, where the department names them
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
        online=u("adoption") < np.asarray(d.adoption_of_ages())[age],
        age=age,
        insured=u("insured") < d.insured_share,
        shows_code=u("shows_code") < d.traditional_code_share,
        dept=np.minimum(np.searchsorted(np.cumsum(shares), u("department"), side="right"),
                        len(shares) - 1),
        doctor_pick=u("doctor"),
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


def appointment_times(sc: Scenario, dept: int) -> np.ndarray:
    """A department's appointment times over the day, sorted. Each slot of
    ``online.slot_length`` holds as many places as its doctors can see in it (at the mean
    doctor time per patient, revisits included) less the walk-ins the scenario expects in
    it (the walk-in share of that slot's arrivals, by the hourly profile), but never fewer
    than the online share of them (the share of every session released to the app), spread
    evenly through the slot. After the last arrival the places continue at the doctors' full pace
    (for holders deferred past the day's arrivals)."""
    d = sc.hospital.departments[dept]
    slot, start, end = sc.online.slot_length, sc.day.arrivals_from, sc.day.arrivals_until
    mean_consult = (sc.times.consult_first.mean_minutes
                    + sc.demand.test_share * sc.times.consult_revisit.mean_minutes)
    per_slot = d.doctors * slot / max(mean_consult, 1e-9)
    walk_in_visits = (1 - sc.demand.adoption) * sc.demand.daily_visits * d.share \
        / sum(x.share for x in sc.hospital.departments)
    rate, _, _ = rate_function(sc.day.hourly_profile, start, end, walk_in_visits)
    starts: list[float] = []
    t, horizon = start, end + 24 * 60.0
    while t < horizon:
        starts.append(t)
        t += slot
    ends = [min(t + slot, end) for t in starts]
    per_min = rate(np.array([(lo + hi) / 2 for lo, hi in zip(starts, ends, strict=True)]))
    times: list[np.ndarray] = []
    for t, hi, r in zip(starts, ends, per_min.tolist(), strict=True):
        expected = r * max(hi - t, 0.0)
        # the online share of each slot's numbers is kept for bookings, as hospitals
        # release a share of every session to the app, even when walk-ins would fill it
        places = int(max(per_slot - expected, sc.demand.adoption * per_slot))
        times.append(t + np.arange(places) * slot / max(places, 1))
    return np.concatenate(times)


def appointment_arrivals(sc: Scenario, p: Patients
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival, call time, booked time) of every patient. An online patient books, in
    the order they book (the order they would have walked in), the earliest free
    appointment time of their department at or after the time they would have walked in
    (``appointment_times``: "precise appointment"); no-shows book too. They come early or
    late around it and are called at it (plus the doctor's call delay). A walk-in's times
    are their arrival."""
    arrival, calls, booked_at = p.arrival.copy(), p.arrival.copy(), p.arrival.copy()
    booking = np.flatnonzero(p.online)
    if not len(booking):  # no one books: every patient walks in
        return arrival, calls, booked_at
    grids = [appointment_times(sc, d) for d in range(len(sc.hospital.departments))]
    next_free = [list(range(len(g) + 1)) for g in grids]  # union-find over free places

    def free_from(d: int, i: int) -> int:
        root = i
        while next_free[d][root] != root:
            root = next_free[d][root]
        while next_free[d][i] != root:  # path compression
            next_free[d][i], i = root, next_free[d][i]
        return root

    for i in booking:  # arrival order = booking order
        d = int(p.dept[i])
        k = free_from(d, int(np.searchsorted(grids[d], p.arrival[i], side="left")))
        if k >= len(grids[d]):  # beyond the grid: the desired time itself
            at = float(p.arrival[i])
        else:
            at = float(grids[d][k])
            next_free[d][k] = k + 1
        booked_at[i] = at
        calls[i] = at + p.call_delay[i]
        arrival[i] = at + p.late[i] if p.is_late[i] else max(0.0, at - p.early[i])
    return arrival, calls, booked_at
