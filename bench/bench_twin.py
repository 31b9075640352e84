"""The twin's speed (CPU seconds of this process, so other load on a shared machine
counts less): patients per second of the tertiary scenario beside a bare SimPy
tandem network with the same number of station visits per patient, in the same run; and
memory per simulated patient."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import simpy
from rich.console import Console
from rich.table import Table

from twin.model.day import HospitalDay
from twin.scenario.schema import load_scenario

from .common import save

SCENARIO = Path("scenarios/tertiary_adoption_60.yaml")


def model_run(keep_steps: bool) -> tuple[float, int, int]:
    sc = load_scenario(SCENARIO)
    t0 = time.process_time()
    day = HospitalDay(sc, 0, keep_steps=keep_steps).run()
    secs = time.process_time() - t0
    visits = sum(st.uses for st in day.stations.values())
    patients = sum(1 for d in day.depart if d == d)
    return secs, patients, visits


def tandem_run(patients: int, stations: int) -> tuple[float, int]:
    """A bare SimPy tandem: Poisson arrivals through ``stations`` M/M/30 stations at
    utilisation 0.7 (request, timeout, release; no statistics), as many customers as the
    model's patients, service times drawn up front as the model draws its own (and timed
    with the run, as the model's are)."""
    rate, servers = 20.0, 30
    mean = servers * 0.7 / rate
    t0 = time.process_time()  # both sides are timed with their random draws
    rng = np.random.default_rng(1)
    gaps = rng.exponential(1 / rate, patients).tolist()
    services = rng.exponential(mean, (patients, stations)).tolist()
    env = simpy.Environment()
    line = [simpy.Resource(env, servers) for _ in range(stations)]
    visits = [0]

    def customer(i: int):
        for k, res in enumerate(line):
            with res.request() as req:
                yield req
                yield env.timeout(services[i][k])
            visits[0] += 1

    def source():
        for i in range(patients):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    env.process(source())
    env.run()
    return time.process_time() - t0, visits[0]


def main(pairs: int = 7) -> None:
    """Model and tandem run back to back ``pairs`` times; each pair gives a ratio (both
    measured under the same momentary load), and the median ratio is the figure."""
    rows = {}
    model_run(False)  # warm-up: first-run costs (imports, caches) are not the model's
    for keep in (False, True):
        ratios, model_us, tandem_us, speed = [], [], [], []
        for _ in range(pairs):
            secs, patients, visits = model_run(keep)
            t_secs, t_visits = tandem_run(patients, round(visits / patients))
            model_us.append(secs / visits * 1e6)
            tandem_us.append(t_secs / t_visits * 1e6)
            ratios.append(model_us[-1] / tandem_us[-1])
            speed.append(patients / secs)
        rows["with step records" if keep else "KPIs only"] = {
            "patients": patients, "station_visits_per_patient": visits / patients,
            "model_patients_per_s": statistics.median(speed),
            "model_us_per_station_visit": statistics.median(model_us),
            "tandem_us_per_station_visit": statistics.median(tandem_us),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios)}
    tracemalloc.start()
    secs, patients, _ = model_run(True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    table = Table(title=f"Twin speed ({SCENARIO.stem}, one hospital day, CPU time, "
                        f"median of {pairs} pairs)")
    for c in ("mode", "patients/s", "visits/patient", "model us/visit", "tandem us/visit",
              "ratio (min-max)"):
        table.add_column(c, justify="right")
    for mode, r in rows.items():
        table.add_row(mode, f"{r['model_patients_per_s']:,.0f}",
                      f"{r['station_visits_per_patient']:.2f}",
                      f"{r['model_us_per_station_visit']:.1f}",
                      f"{r['tandem_us_per_station_visit']:.1f}",
                      f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})")
    Console().print(table)
    mem = peak / patients
    worst = max(r["ratio"] for r in rows.values())
    print(f"peak traced memory {peak / 2**20:.1f} MiB for {patients} patients: "
          f"{mem / 1024:.1f} KiB per patient (with step records)")
    print(f"target: model <= 1.5x the bare tandem per station visit (median ratio): "
          f"{'met' if worst <= 1.5 else 'NOT met'} (worst mode {worst:.2f})")
    print("wrote", save("twin", {"scenario": str(SCENARIO), "modes": rows,
                                 "bytes_per_patient": mem, "target_met": worst <= 1.5}))


if __name__ == "__main__":
    main()
