"""The twin's speed: patients per second of the tertiary scenario beside a bare SimPy
tandem network with the same number of station visits per patient, in the same run; and
memory per simulated patient."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import simpy
from rich.console import Console
from rich.table import Table

from twin.model import HospitalDay
from twin.scenario import load_scenario

from .common import save

SCENARIO = Path("scenarios/tertiary_adoption_60.yaml")


def model_run(keep_steps: bool) -> tuple[float, int, int]:
    sc = load_scenario(SCENARIO)
    t0 = time.perf_counter()
    day = HospitalDay(sc, 0, keep_steps=keep_steps).run()
    secs = time.perf_counter() - t0
    visits = sum(st.uses for st in day.stations.values())
    patients = sum(1 for d in day.depart if d == d)
    return secs, patients, visits


def tandem_run(patients: int, stations: int) -> tuple[float, int]:
    """A bare SimPy tandem: Poisson arrivals through ``stations`` M/M/30 stations at
    utilisation 0.7 (request, timeout, release; no statistics), as many customers as the
    model's patients, service times drawn beforehand as the model draws its own."""
    rate, servers = 20.0, 30
    mean = servers * 0.7 / rate
    rng = np.random.default_rng(1)
    gaps = rng.exponential(1 / rate, patients).tolist()
    services = rng.exponential(mean, (patients, stations)).tolist()
    env = simpy.Environment()
    line = [simpy.Resource(env, servers) for _ in range(stations)]
    visits = [0]

    def customer(i: int):  # type: ignore[no-untyped-def]
        for k, res in enumerate(line):
            with res.request() as req:
                yield req
                yield env.timeout(services[i][k])
            visits[0] += 1

    def source():  # type: ignore[no-untyped-def]
        for i in range(patients):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    t0 = time.perf_counter()
    env.process(source())
    env.run()
    return time.perf_counter() - t0, visits[0]


def main(repeats: int = 5) -> None:
    """Model and tandem alternate ``repeats`` times; the best time of each is compared
    (the least disturbed by other load on a shared machine)."""
    rows = {}
    model_run(False)  # warm-up: first-run costs (imports, caches) are not the model's
    for keep in (False, True):
        runs, tandem = [], []
        for _ in range(repeats):
            runs.append(model_run(keep))
            per_patient = runs[-1][2] / runs[-1][1]
            tandem.append(tandem_run(runs[-1][1], round(per_patient)))
        secs, patients, visits = min(runs)
        t_secs, t_visits = min(tandem)
        per_patient = visits / patients
        model_us = secs / visits * 1e6
        tandem_us = t_secs / t_visits * 1e6
        rows["with step records" if keep else "KPIs only"] = {
            "patients": patients, "station_visits_per_patient": per_patient,
            "model_patients_per_s": patients / secs, "model_us_per_station_visit": model_us,
            "tandem_us_per_station_visit": tandem_us, "ratio": model_us / tandem_us}
    tracemalloc.start()
    secs, patients, _ = model_run(True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    table = Table(title=f"Twin speed ({SCENARIO.stem}, one hospital day)")
    for c in ("mode", "patients/s", "visits/patient", "model us/visit", "tandem us/visit",
              "ratio"):
        table.add_column(c, justify="right")
    for mode, r in rows.items():
        table.add_row(mode, f"{r['model_patients_per_s']:,.0f}",
                      f"{r['station_visits_per_patient']:.2f}",
                      f"{r['model_us_per_station_visit']:.1f}",
                      f"{r['tandem_us_per_station_visit']:.1f}", f"{r['ratio']:.2f}")
    Console().print(table)
    mem = peak / patients
    worst = max(r["ratio"] for r in rows.values())
    print(f"peak traced memory {peak / 2**20:.1f} MiB for {patients} patients: "
          f"{mem / 1024:.1f} KiB per patient (with step records)")
    print(f"target: model <= 1.5x the bare tandem per station visit: "
          f"{'met' if worst <= 1.5 else 'NOT met'} (worst {worst:.2f})")
    print("wrote", save("twin", {"scenario": str(SCENARIO), "modes": rows,
                                 "bytes_per_patient": mem, "target_met": worst <= 1.5}))


if __name__ == "__main__":
    main()
