"""Simulate every hospital of every city for a day under both flows, on a local process
pool or a Dask cluster, aggregating as results arrive (no patient rows are kept)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.experiments.demand import Demand, write_demand
from twin.experiments.paired import counterfactual_day
from twin.model.day import HospitalDay
from twin.results.kpis import WINDOWS, kpis, patients_frame
from twin.results.spreadsheets import write_table
from twin.results.stats import t_interval
from twin.scenario.province import Province
from twin.scenario.schema import Scenario

CHUNK = 6  # hospitals per task: small enough to balance, large enough to amortise


@dataclass(frozen=True)
class Task:
    city: str
    archetype: str
    level: str
    scenario: Scenario  # scaled to the archetype, seed set
    adoption: float
    hospitals: tuple[int, ...]  # global hospital numbers (seed streams)
    replication: int
    target_utilisation: float
    keep_patients: bool = False


def _needed(busy_h: float, open_h: float, target: float) -> int:
    return math.ceil(busy_h / (open_h * target)) if busy_h > 0 else 0


def day_figures(day: HospitalDay, sc: Scenario, target_utilisation: float) -> dict[str, Any]:
    """One day's side of a hospital's row: visits, visit time, waits, stations needed."""
    k = kpis(day)
    st = day.stations
    open_h = max(day.end - sc.day.arrivals_from, 60.0) / 60
    out: dict[str, Any] = {"patients": k["patients"], "visit_time": k["visit_time"]}
    for w in ("wait_registration", "wait_payment", "wait_pharmacy", "wait_doctor"):
        out[w] = k[w]
    out["kiosks_needed"] = _needed(st["kiosk"].busy / 60, open_h, target_utilisation)
    out["windows_needed"] = sum(_needed(st[w].busy / 60, open_h, target_utilisation)
                                for w in WINDOWS)
    out["window_busy_hours"] = k["window_busy_hours"]
    return out


def hospital_row(task: Task, h: int, base: dict[str, Any], scenario: dict[str, Any],
                 no_shows: int) -> dict[str, Any]:
    """A hospital's row from its two days' figures (``day_figures``)."""
    row: dict[str, Any] = {"city": task.city, "archetype": task.archetype,
                           "level": task.level, "hospital": h,
                           "replication": task.replication, "adoption": task.adoption}
    for tag, side in (("base", base), ("scenario", scenario)):
        row.update({f"{name}_{tag}": v for name, v in side.items()})
    row["kiosks"] = task.scenario.resources.kiosks
    # the same people came on both days (no-shows on neither): minutes saved over the
    # shown visits, paired
    row["minutes_saved"] = (row["visit_time_base"] - row["visit_time_scenario"]) \
        * row["patients_scenario"]
    row["visits"] = row["patients_scenario"]
    row["no_shows"] = no_shows
    return row


def online_day(task: Task, h: int) -> HospitalDay:
    """The hospital's day at the task's adoption, its card-network demand recorded."""
    return HospitalDay(task.scenario.with_adoption(task.adoption), task.replication, h,
                       keep_steps=False, record_demand=True, sample_every=None).run()


def _hospital_row(task: Task, h: int) -> tuple[dict[str, Any], Demand, pd.DataFrame | None]:
    sc = task.scenario
    online = online_day(task, h)
    patients = patients_frame(online).assign(
        city=task.city, archetype=task.archetype, hospital=h,
        replication=task.replication) if task.keep_patients else None
    scenario = day_figures(online, sc, task.target_utilisation)
    # at no adoption the day is its own counterfactual: the same people, the same flow
    base = scenario if task.adoption == 0 else day_figures(
        counterfactual_day(sc, task.replication, h, absent=online.absent, sample_every=None), sc,
        task.target_utilisation)
    row = hospital_row(task, h, base, scenario, int(np.count_nonzero(online.absent)))
    return row, Demand.of_day(online), patients


def run_task(task: Task) -> tuple[list[dict[str, Any]], dict[str, Demand], list]:
    """One chunk of hospitals of one city and archetype: rows, demand per city, and the
    patients of the scenario run when asked to keep them."""
    rows, demand, patients = [], Demand(), []
    for h in task.hospitals:
        row, d, pts = _hospital_row(task, h)
        rows.append(row)
        demand = demand + d
        if pts is not None:
            patients.append(pts)
    return rows, {task.city: demand}, patients


def plan(prov: Province, base_dir: Path, month: int, replications: int,
         seed: int | None = None, keep_patients: bool = False,
         variant: Callable[[Scenario], Scenario] | None = None) -> list[Task]:
    """The tasks of a month; ``variant`` changes every hospital scenario alike (a sample
    of the assumptions)."""
    scenarios = prov.hospital_scenarios(base_dir)
    if variant is not None:
        scenarios = {name: variant(sc) for name, sc in scenarios.items()}
    seed = prov.seed if seed is None else seed
    tasks, number = [], 0
    for city in prov.cities:
        for name, count in city.hospitals.items():
            sc = scenarios[name].model_copy(update={"seed": seed})
            numbers = list(range(number, number + count))
            number += count
            live = city.hospitals_live(month, count)  # the first `live` take the code
            adoption = city.live_adoption(month, prov.card_visit_ratio)
            for rep in range(replications):
                for group, share in _chunks(numbers, live, adoption):
                    tasks.append(Task(city.name, name, prov.archetypes[name].level, sc,
                                      share, group, rep, prov.money.target_utilisation,
                                      keep_patients))
    return tasks


def _chunks(numbers: list[int], live: int, adoption: float
            ) -> list[tuple[tuple[int, ...], float]]:
    """The live hospitals in chunks, then the others. Chunks are cut at fixed places
    (every CHUNK hospitals of the archetype), so that a hospital not yet live sits in the
    same chunk whatever the month: the roll-out runs such a chunk once for every month."""
    cuts = range(0, len(numbers), CHUNK)
    on = [tuple(numbers[lo:min(lo + CHUNK, live)]) for lo in cuts if lo < live]
    off = [tuple(numbers[max(lo, live):lo + CHUNK]) for lo in cuts
           if max(lo, live) < min(lo + CHUNK, len(numbers))]
    return [(c, adoption) for c in on] + [(c, 0.0) for c in off]


def execute(tasks: Sequence[Any], workers: int = 1, scheduler: str | None = None,
            progress: Callable[[int], None] | None = None,
            run: Callable[[Any], Any] = run_task) -> Iterable[Any]:
    """``run`` of each task (default ``run_task``), in task order whatever the executor, so
    the same seeds give the same numbers on one process, a pool or a cluster."""
    if scheduler:
        from dask.distributed import Client

        with Client(scheduler) as client:
            futures = client.map(run, tasks, pure=False)
            for fut in futures:
                out = fut.result()
                if progress:
                    progress(1)
                yield out
        return
    if workers <= 1:
        for t in tasks:
            out = run(t)
            if progress:
                progress(1)
            yield out
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        for out in pool.map(run, tasks):
            if progress:
                progress(1)
            yield out


@dataclass
class ProvinceResult:
    province: Province
    month: int
    hospitals: pd.DataFrame
    demand: dict[str, Demand]
    patients: pd.DataFrame | None = None

    @property
    def demand_total(self) -> Demand:
        total = Demand()
        for d in self.demand.values():
            total = total + d
        return total


def run_province(prov: Province, base_dir: Path, *, month: int, replications: int | None = None,
                 workers: int = 1, scheduler: str | None = None, seed: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 tasks: list[Task] | None = None) -> ProvinceResult:
    reps = replications or prov.replications
    tasks = tasks if tasks is not None else plan(prov, base_dir, month, reps, seed)
    rows: list[dict[str, Any]] = []
    demand: dict[str, Demand] = {}
    patients: list[pd.DataFrame] = []
    for task_rows, task_demand, task_patients in execute(tasks, workers, scheduler, progress):
        rows.extend(task_rows)
        patients.extend(task_patients)
        for city, d in task_demand.items():
            demand[city] = demand.get(city, Demand()) + d
    return ProvinceResult(prov, month, pd.DataFrame(rows), demand,
                          pd.concat(patients, ignore_index=True) if patients else None)


def province_saving(res: ProvinceResult) -> tuple[float, float]:
    """(minutes saved per shown visit, days saved a year) of the whole province."""
    df = res.hospitals
    reps = max(df.replication.nunique(), 1)
    per_visit = float(df.minutes_saved.sum() / max(df.visits.sum(), 1))
    days = float(df.minutes_saved.sum()) / reps * res.province.days_per_year / 1440
    return per_visit, days


def assumption_samples(prov: Province, base_dir: Path, month: int, samples: int, *,
                       workers: int = 1, seed: int | None = None,
                       progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """The province's month under ``samples`` draws of a Latin hypercube over every
    registered assumption (each applied to every hospital alike; one replication each,
    the same seeds): one row per sample with the values and the province's saving. Its
    spread is the weight of what nobody measured on the province's figures."""
    from twin.experiments.sensitivity import apply, latin_hypercube

    rows = []
    for i, values in enumerate(latin_hypercube(samples, prov.seed if seed is None else seed)):
        tasks = plan(prov, base_dir, month, 1, seed, variant=partial(apply, values=values))
        res = run_province(prov, base_dir, month=month, workers=workers, tasks=tasks,
                           progress=progress)
        per_visit, days = province_saving(res)
        rows.append({"sample": i, **values, "saved": per_visit, "days_saved_per_year": days})
    return pd.DataFrame(rows)


def ratio_interval(saved: np.ndarray, visits: np.ndarray) -> tuple[float, float, float]:
    """Minutes saved per visit, Σsaved/Σvisits, with a 95% interval treating hospitals as
    independent clusters (ratio estimator, linearised variance)."""
    from scipy import stats

    n, total = len(saved), visits.sum()
    if total <= 0:
        return (math.nan, math.nan, math.nan)
    r = saved.sum() / total
    if n < 2:
        return (r, math.nan, math.nan)
    resid = saved - r * visits
    se = math.sqrt(n / (n - 1) * float((resid ** 2).sum())) / total
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return (r, r - half, r + half)


def city_table(res: ProvinceResult) -> pd.DataFrame:
    """Per city and for the province: visits, time saved per visit (95% CI), days saved
    a year, kiosks and window staff needed, cards."""
    prov, df = res.province, res.hospitals
    reps = df.replication.nunique()
    rows = []
    groups = [(c.name, df[df.city == c.name], [c]) for c in prov.cities]
    groups.append((f"{prov.name} (province)", df, prov.cities))
    for name, g, cities in groups:
        if reps > 1:  # interval over replications
            per_rep = g.groupby("replication")[["minutes_saved", "visits"]].sum()
            mean, lo, hi = t_interval((per_rep.minutes_saved / per_rep.visits).to_numpy())
        else:
            mean, lo, hi = ratio_interval(g.minutes_saved.to_numpy(float),
                                          g.visits.to_numpy(float))
        visits_day = g.visits.sum() / reps
        rows.append({
            "city": name,
            "hospitals": int(g.hospital.nunique()),
            "adoption": float(np.average(g.adoption, weights=g.visits)) if len(g) else 0.0,
            "visits_per_day": visits_day,
            "visits_per_year_millions": visits_day * prov.days_per_year / 1e6,
            "minutes_saved_per_visit": mean, "ci_low": lo, "ci_high": hi,
            "days_saved_per_year": mean * visits_day * prov.days_per_year / 1440,
            "kiosks_needed_traditional": g.kiosks_needed_base.sum() / reps,
            "kiosks_needed_scenario": g.kiosks_needed_scenario.sum() / reps,
            "windows_needed_traditional": g.windows_needed_base.sum() / reps,
            "windows_needed_scenario": g.windows_needed_scenario.sum() / reps,
            "ehc_cards_millions": sum(c.ehc_cards_millions for c in cities),
            "fused_cards_millions": sum(c.fused_cards_millions for c in cities),
        })
    return pd.DataFrame(rows)


def paper_table(res: ProvinceResult, cities: pd.DataFrame) -> pd.DataFrame:
    """The paper's figures beside the model's, with the difference and why."""
    prov, df = res.province, res.hospitals
    p = prov.paper
    total = cities.iloc[-1]
    tert = df[df.level == "tertiary"]
    kiosk_saving = float(((tert.kiosks_needed_base - tert.kiosks_needed_scenario)
                          * prov.money.kiosk_maintenance_yuan_per_year).mean()) \
        if len(tert) else math.nan
    model = {
        "minutes saved per visit": total.minutes_saved_per_visit,
        "days saved per year (level-2+ hospitals)": total.days_saved_per_year,
        "visits per year at level-2+ hospitals": total.visits_per_year_millions * 1e6,
        "kiosk maintenance saved per tertiary hospital (yuan/year)": kiosk_saving,
        "EHC cards issued (millions)": total.ehc_cards_millions,
        "fused cards (millions)": total.fused_cards_millions,
    }
    paper = {
        "minutes saved per visit": p.minutes_saved_per_visit,
        "days saved per year (level-2+ hospitals)": p.days_saved_per_year,
        "visits per year at level-2+ hospitals": p.implied_visits_per_year,
        "kiosk maintenance saved per tertiary hospital (yuan/year)":
            p.kiosk_saving_yuan_per_tertiary,
        "EHC cards issued (millions)": p.ehc_cards_millions,
        "fused cards (millions)": p.fused_cards_millions,
    }
    why = {
        "minutes saved per visit": "simulated, not fitted: every visit of every hospital at "
        f"month {res.month}'s adoption ({total.adoption:.0%}) against the same day all "
        "traditional; the paper's figure is one rounded province average of real use",
        "days saved per year (level-2+ hospitals)": "minutes saved per visit x visits a "
        f"year / 1440, from the model's own inputs ({prov.days_per_year} days a year)",
        "visits per year at level-2+ hospitals": "an input (hospital counts x daily visits),"
        " set near the paper's implied 3e6 days x 1440 / 20 min",
        "kiosk maintenance saved per tertiary hospital (yuan/year)": "kiosks no longer "
        "needed (busy hours at the target utilisation) x maintenance per kiosk-year "
        f"({prov.money.kiosk_maintenance_yuan_per_year:,} yuan, an assumption)",
        "EHC cards issued (millions)": "an input per city (the paper's figure spread by "
        "population)",
        "fused cards (millions)": "an input per city (the paper's figure spread by "
        "population)",
    }
    return pd.DataFrame([{"figure": k, "paper": paper[k], "model": v,
                          "difference": v - paper[k],
                          "relative": (v - paper[k]) / paper[k] if paper[k] else math.nan,
                          "why": why[k]} for k, v in model.items()])


def write_outputs(res: ProvinceResult, prov: Province, month: int, out: Path,
                  demand_scale: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Write a province run's tables, demand curves and plots to ``out``; returns the city
    table, the paper's figures beside the model's, and the demand peaks."""
    from twin.report.plots import city_savings, demand_curve

    out.mkdir(parents=True, exist_ok=True)
    cities = city_table(res)
    paper = paper_table(res, cities)
    res.hospitals.to_csv(out / "hospitals.csv", index=False)
    if res.patients is not None:
        res.patients.to_parquet(out / "patients.parquet", index=False)
    write_table(cities, out / "cities.csv")
    write_table(paper, out / "paper_comparison.csv")
    total = res.demand_total
    write_demand(total, out / "demand.csv", demand_scale)
    by_city = pd.concat([d.frame().assign(city=c) for c, d in res.demand.items()])
    by_city[by_city.total > 0].to_csv(out / "demand_by_city.csv", index=False)
    peaks = total.peaks()
    (out / "demand_peaks.json").write_text(json.dumps(peaks, indent=1))
    city_savings(cities, prov.paper.minutes_saved_per_visit, out / "savings_by_city.png")
    demand_curve(total.frame(), out / "demand.png",
                 f"Card-network demand, {prov.name}, month {month}")
    return cities, paper, peaks
