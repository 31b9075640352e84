"""The twin's own commands: ``ehc twin run|compare|station|params``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from twin.results.folders import FolderRefused, fresh_folder
from twin.results.spreadsheets import write_table
from twin.scenario.schema import Scenario, ScenarioError, load_scenario
from twin.scenario.units import fraction

app = typer.Typer(no_args_is_help=True, help="The hospital twin (SimPy).")
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # every error goes to stderr, the results to stdout


def _load(path: Path) -> Scenario:
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        errors.print(f"[red]scenario error[/]\n{exc}")
        raise typer.Exit(2) from None


def _number_or_text(text: str) -> int | float | str:
    """``"3"`` and ``"0.5"`` as numbers, ``"50%"`` as text for the unit parser."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


REPLICATIONS = typer.Option(None, "--replications", "-r", min=1,
                            help="days per flow (default: the scenario's)")
WORKERS = typer.Option(1, min=1, max=64, help="local processes")
SEED = typer.Option(None, min=0, help="base seed (default: the scenario's)")
FORCE = typer.Option(False, "--force", help="clear --out first when an earlier run left "
                     "files there (otherwise such a folder is refused)")


def _out_dir(out: Path | None, default: Path, force: bool) -> Path:
    """The run's folder (twin.results.folders), or exit 2 saying why not."""
    try:
        return fresh_folder(out, default, force)
    except FolderRefused as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def _run(sc: Scenario, replications: int | None, seed: int | None, workers: int,
         keep: bool = True, label: str | None = None):
    from twin.experiments.runner import run_replications

    reps = replications or sc.replications
    with _progress() as bar:
        task = bar.add_task(label or sc.name, total=reps)
        return run_replications(sc, reps, seed=seed, workers=workers, keep_patients=keep,
                                progress=lambda n: bar.advance(task, n))


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.2f}"


def _summary_table(title: str, df: pd.DataFrame, cols: list[str]) -> Table:
    """KPIs with their 95 % interval; a bootstrap interval (a quantity that cannot be
    negative, or a share above 1, whose t interval would reach past that bound) is marked
    * and said in the caption."""
    boot = "interval" in df and (df["interval"] == "bootstrap").any()
    table = Table(title=title, caption="* percentile bootstrap interval (the t interval "
                  "would reach below 0, or a share above 1)" if boot else None)
    for c in ["kpi", *cols, "unit"]:
        table.add_column(c, justify="left" if c in ("kpi", "unit") else "right",
                         overflow="fold")
    for _, r in df.iterrows():
        mark = "*" if boot and r["interval"] == "bootstrap" else ""
        table.add_row(r["kpi"] + mark, *[_fmt(r[c]) for c in cols], r["unit"])
    return table


def _write_run(res, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "kpis.csv", out / "summary.csv", out / "stations.csv", out / "queues.csv",
             out / "scenario.json"]
    write_table(res.kpis, files[0])
    write_table(res.summary(), files[1])
    write_table(res.stations, files[2])
    res.queues.to_csv(files[3], index=False)
    files[4].write_text(res.scenario.model_dump_json(indent=1))
    if res.patients is not None:
        res.patients.to_parquet(out / "patients.parquet", index=False)
        res.steps.to_parquet(out / "steps.parquet", index=False)
        files += [out / "patients.parquet", out / "steps.parquet"]
        files.append(_write_staffing(res, out / "staffing.csv"))
    return files


def _write_staffing(res, path: Path) -> Path:
    """Per station and hour, the servers the scenario's service level needs (mean over
    replications) beside those staffed."""
    from twin.results.staffing import staffing_by_hour
    from twin.scenario.schema import ShiftKey

    sc, r = res.scenario, res.scenario.resources
    keys: dict[str, ShiftKey] = {"registration window": "registration_windows",
                                 "kiosk": "kiosks", "payment window": "payment_windows",
                                 "pharmacy window": "pharmacy_windows"}

    def staffed(station: str, hour: int) -> float:  # open at the middle of the hour
        return r.open_at(keys[station], hour * 60 + 30) if station in keys else 0

    per_rep = staffing_by_hour(res.steps, staffed, sc.service_target_min, sc.service_level)
    table = (per_rep.groupby(["station", "hour"], as_index=False)
             .agg(uses=("uses", "mean"), service_mean=("service_mean", "mean"),
                  needed=("needed", "max"), staffed=("staffed", "first"),
                  within_target=("within_target", "mean")))
    write_table(table, path)
    return path


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="scenario YAML"),
    replications: int | None = REPLICATIONS,
    seed: int | None = SEED,
    out: Path | None = typer.Option(None, help="output folder (default: results/twin/NAME, "
                                    "replaced)"),
    force: bool = FORCE,
    workers: int = WORKERS,
    cosim: bool = typer.Option(False, "--cosim", help="co-simulate one day through the "
                               "real card stack (in-process, or the stack at --url)"),
    visits: int | None = typer.Option(None, min=10, help="the same hospital design scaled "
                                      "to this many visits a day (e.g. a reduced day for "
                                      "--cosim)"),
    url: str | None = typer.Option(None, help="with --cosim: a running stack"),
    admin_token: str | None = typer.Option(None, envvar="EHC_ADMIN_TOKEN",
                                           help="with --cosim --url: its admin token"),
    real_delays: bool = typer.Option(False, help="with --cosim: make the stack sleep a "
                                     "'slow' fault's delay on every call (costs that "
                                     "much wall-clock time per call; default: the delay "
                                     "is added to each call's simulated time)"),
) -> None:
    """Simulate a hospital day R times; write tidy results and print KPIs with 95% CIs.
    With --cosim, one day whose online patients run through the real card stack."""
    from twin.experiments.outage import outage_report
    from twin.report.plots import queues_over_day, visit_time_ecdf, waits_by_station

    sc = _load(scenario)
    if visits is not None:
        from twin.scenario.province import scale_hospital

        sc = scale_hospital(sc, visits)
    if cosim:
        _cosim(sc, url, admin_token,
               _out_dir(out, Path("results/twin") / f"{sc.name}-cosim", force), real_delays)
        return
    if url:
        raise typer.BadParameter("--url is for --cosim")
    out = _out_dir(out, Path("results/twin") / sc.name, force)
    res = _run(sc, replications, seed, workers)
    files = _write_run(res, out)
    files.append(waits_by_station({sc.name: res.kpis}, out / "waits.png"))
    files.append(visit_time_ecdf({f.title(): g for f, g in res.patients.groupby("flow")},
                                 out / "visit_time_ecdf.png"))
    files.append(queues_over_day(res.queues, out / "queues.png",
                                 f"Queues over the day: {sc.name}"))
    title = f"{sc.name}: {len(res.kpis)} replications, seed {res.scenario.seed}"
    console.print(_summary_table(title, res.summary(), ["mean", "ci_low", "ci_high"]))
    need = res.replications_needed("visit_time", 0.05) if len(res.kpis) > 1 else None
    if need and need > len(res.kpis):
        console.print(f"for visit_time within ±5 % (95 % CI), run {need} replications: "
                      f"ehc twin run {scenario} -r {need}")
    elif need:
        console.print(f"visit_time is within ±5 % (95 % CI) with {len(res.kpis)} "
                      "replications")
    if sc.faults:
        _print_outage(outage_report(sc, len(res.kpis), out))
        files += [out / "outage.png", out / "outage.json", out / "outage_queues.csv"]
    console.print(f"wrote {len(files)} files to {out}")


def _cosim(sc: Scenario, url: str | None, admin_token: str | None, out: Path,
           real_delays: bool = False) -> None:
    import contextlib

    import httpx

    from services.sdk import SdkError, explain
    from twin.experiments.cosim import run_cosim

    if url and not admin_token:
        raise typer.BadParameter("--admin-token (or EHC_ADMIN_TOKEN) is needed with --url")
    stack: contextlib.AbstractContextManager
    if url and admin_token:
        stack = contextlib.nullcontext()
        base, token = url, admin_token
    else:
        import tempfile

        from services.sdk import Settings, start_in_thread

        var = Path(tempfile.mkdtemp(prefix="ehc-cosim-"))
        stack = start_in_thread(Settings(var_dir=var, log_level="WARNING",
                                         rate_limit_terminal_per_s=0))
        base, token = stack.url, stack.admin_token
    try:
        with stack, _progress() as bar:
            task = bar.add_task("seeding real cards", total=None)
            res = run_cosim(sc, base, token, out, lambda n: bar.advance(task, n), real_delays)
    except (SdkError, httpx.HTTPError) as exc:  # the stack at --url: unreachable, or refused
        errors.print(f"[red]co-simulation stopped: {explain(exc)}[/]")
        raise typer.Exit(2) from None
    c = res["check"]
    where = f"the stack at {url}" if url else "an in-process stack"
    console.print(f"co-simulated {sc.name} against {where}: {res['online_patients']} "
                  "online patients, "
                  f"{res['calls']} calls in {res['wall_s']:.1f} s "
                  f"({res['patients_per_s']:.1f} patients/s; call p50 "
                  f"{res['latency_ms']['p50']:.1f} ms, p95 {res['latency_ms']['p95']:.1f} ms)")
    console.print(f"stack vs model: usage records {c['usage_records']} = scans "
                  f"{c['model_scans_ok']} + payment-step verifications "
                  f"{c['verifications_by_step'].get('10105', 0)}; settled {c['settled_on_stack']}"
                  f" = insured phone payments {c['settled_by_model']}; ledger "
                  f"{'reconciles' if c['ledger_clean'] else 'DIFFERS'}; audit chains "
                  f"{'intact' if all(c['audit_clean'].values()) else 'BROKEN'}: "
                  + ("[green]match[/]" if c["match"] else "[red]MISMATCH[/]"))
    if c["refusals"]:
        console.print(f"refusals from the stack: {c['refusals']}; fallbacks "
                      f"{res['fallbacks']}")
    if "outage" in res:
        _print_outage(res["outage"])
    console.print(f"wrote {out / 'cosim.json'}")
    if not c["match"]:
        raise typer.Exit(1)


def _print_outage(summary: dict) -> None:
    extra = summary["extra_minutes_per_visit"]
    console.print(f"[bold]outage[/]: {extra['mean']:+.1f} min per visit (95% CI "
                  f"{extra['ci_low']:+.1f} to {extra['ci_high']:+.1f}) against the same day "
                  f"without it; fallbacks a day: " + ", ".join(
                      f"{k.replace('_', ' ')} {v:.0f}"
                      for k, v in summary["fallbacks_per_day"].items()))
    for f in summary["faults"]:
        for name, st in f["stations"].items():
            rec = "not within the day" if st["recovery_min"] is None else \
                f"{st['recovery_min']:.0f} min after {f['to']}"
            console.print(f"  {f['target']} {f['mode']} {f['from']}-{f['to']}: {name} queue "
                          f"peaks at {st['peak_queue']:.1f} (no fault "
                          f"{st['peak_queue_no_fault']:.1f}), back to normal {rec}")


@app.command()
def compare(
    a: Path = typer.Argument(..., help="scenario A (baseline)"),
    b: Path = typer.Argument(..., help="scenario B"),
    replications: int | None = REPLICATIONS,
    seed: int | None = typer.Option(None, min=0, help="seed for both (default: A's)"),
    out: Path | None = typer.Option(None, help="output folder (default: "
                                    "results/twin/compare-A-vs-B, replaced)"),
    force: bool = FORCE,
    workers: int = WORKERS,
) -> None:
    """Paired differences B - A with 95% CIs (same seeds: common random numbers; two
    scenarios whose patients differ, e.g. two hospitals, are said so)."""
    from twin.experiments.runner import paired_differences, same_people
    from twin.report.plots import paired_differences_plot, visit_time_ecdf, waits_by_station

    sa, sb = _load(a), _load(b)
    out = _out_dir(out, Path("results/twin") / f"compare-{sa.name}-vs-{sb.name}", force)
    seed = seed if seed is not None else sa.seed
    reps = replications or max(sa.replications, sb.replications)
    ra = _run(sa, reps, seed, workers, label=f"A {sa.name}")
    rb = _run(sb, reps, seed, workers, label=f"B {sb.name}")
    diff = paired_differences(ra, rb)
    over = f"over {reps} replications" + ("" if same_people(sa, sb) else
                                          ", seeds shared, patients differ")
    write_table(diff, out / "paired_differences.csv")
    paired_differences_plot(diff, out / "paired_differences.png",
                            f"B ({sb.name}) - A ({sa.name}), paired {over}")
    waits_by_station({f"A {sa.name}": ra.kpis, f"B {sb.name}": rb.kpis}, out / "waits.png")
    visit_time_ecdf({f"A {sa.name}": ra.patients, f"B {sb.name}": rb.patients},
                    out / "visit_time_ecdf.png")
    console.print(_summary_table(f"B - A, paired {over} (seed {seed})",
                                 diff, ["a", "b", "difference", "ci_low", "ci_high"]))
    if not same_people(sa, sb):
        errors.print(f"note: A and B do not see the same patients (arrivals, visits a "
                     f"day or departments differ: {sa.demand.daily_visits:,.0f} against "
                     f"{sb.demand.daily_visits:,.0f} visits a day), so the common seeds "
                     "buy no precision; each interval still holds")
    console.print(f"wrote paired_differences.csv, paired_differences.png, waits.png, "
                  f"visit_time_ecdf.png to {out}")


@app.command()
def station(
    servers: int = typer.Option(..., min=1, help="c"),
    arrival_rate: float = typer.Option(..., min=0, max=1e6, help="lambda, arrivals per "
                                       "minute"),
    service_mean: float = typer.Option(..., min=1e-9, max=1e6, help="mean service, minutes"),
    service: str = typer.Option("exponential", help="service times' shape: exponential, "
                                "fixed, gamma or lognormal (the model's own sampling)"),
    service_cv: float = typer.Option(None, min=1e-3, max=10, help="coefficient of "
                                     "variation of service "
                                     "(gamma and lognormal; the model's lognormal stations "
                                     "have about 0.4-0.55)"),
    hours: float = typer.Option(100.0, min=0.1, max=1e5, help="simulated hours per "
                                "replication"),
    replications: int = typer.Option(10, min=1),
    seed: int = typer.Option(1, min=0),
    warmup_fraction: float = typer.Option(0.2, min=0, max=0.9),
    line: bool = typer.Option(False, "--line", help="on the model's computed first-come "
                              "line (FifoLine: its windows, kiosks and pharmacy) instead "
                              "of its simulated queue (FastResource): the same arrivals "
                              "and services give the same waits"),
    as_json: bool = typer.Option(False, "--json", help="print JSON only"),
) -> None:
    """One M/G/c station in steady state, beside queueing theory: Erlang C (exponential
    service), Pollaczek-Khinchine (one server, any shape), Allen-Cunneen's approximation
    (several servers, other shapes)."""
    from twin.validation.bare_queues import service_cv as cv_of
    from twin.validation.bare_queues import service_dist, station_experiment
    from twin.validation.queueing import relaxation_time

    try:
        service_dist(service, service_mean, service_cv)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--service") from None
    if arrival_rate >= servers / service_mean:
        errors.print(
            f"[yellow]warning[/]: rho = {arrival_rate * service_mean / servers:.3f} >= 1, "
            "the queue grows without bound", style="yellow")
    else:
        settle_h = relaxation_time(servers, arrival_rate, service_mean,
                                   cv_of(service, service_cv)) / 60
        if hours * (1 - warmup_fraction) < 10 * settle_h:
            errors.print(
                f"[yellow]warning[/]: at rho {arrival_rate * service_mean / servers:.4g} the "
                f"queue forgets its start over about {settle_h:,.3g} h (Morse's relaxation "
                f"time); {hours:g} h a replication after a {warmup_fraction:.0%} warm-up is "
                "less than ten of those, so the waits may be far from the steady state: "
                "give --hours more", highlight=False)
    r = station_experiment(servers, arrival_rate, service_mean, hours, replications, seed,
                           warmup_fraction, service, service_cv, line)
    if as_json:  # strict JSON: an unbounded closed-form wait (rho >= 1) is null
        print(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v
                          for k, v in r.items()}, allow_nan=False))
        return
    for k, v in r.items():
        console.print(f"{k:>16}: {'n/a' if v is None else v}")
    if r["theory_within_ci"] is not None:
        console.print(
            f"simulated mean wait {r['mean_wait']:.3f} min (95 % interval {r['ci_low']:.3f} "
            f"to {r['ci_high']:.3f}); {r['theory']}: {r['theory_wait']:.3f} min, "
            + ("inside the interval" if r["theory_within_ci"] else "[yellow]outside the "
               "interval[/] (longer --hours or more --replications near rho 1; an "
               "approximation has its own error)"), highlight=False)
    if r["mean_wait"] is None:
        errors.print(
            "[yellow]no mean wait[/]: in some replication nobody who arrived after the "
            "warm-up reached service (no arrivals, or a queue that outgrows --hours)")


@app.command()
def params(
    as_yaml: bool = typer.Option(False, "--yaml", help="print a scenario file of every "
                                 "default, with units, that loads as written"),
) -> None:
    """Every scenario parameter with its default (with its unit, as a scenario file
    writes it) and its source."""
    import yaml

    from twin.scenario.template import field_type, render, template

    if as_yaml:
        print("# every scenario key at its default (ehc twin params --yaml); keep the keys\n"
              "# you change, or start a file with 'extends: <a scenario>'\n"
              + yaml.safe_dump(template(), sort_keys=False, allow_unicode=True), end="")
        return
    sc = Scenario(name="defaults")
    table = Table(title="Scenario parameters (defaults)")
    table.add_column("key", overflow="fold")
    table.add_column("default", overflow="fold")
    table.add_column("source / meaning", overflow="fold")

    def walk(model, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            key = f"{prefix}{name}"
            if isinstance(value, BaseModel) and not hasattr(value, "dist"):
                walk(value, key + ".")
            else:
                shown = render(value, field_type(field))
                text = yaml.safe_dump(shown, default_flow_style=True, allow_unicode=True,
                                      width=10_000).strip() if isinstance(
                    shown, dict | list) else str(shown)
                table.add_row(key, text, (value.source if hasattr(value, "dist")
                                          else field.description) or "")

    walk(sc, "")
    console.print(table)


@app.command()
def province(
    scenario: Path = typer.Argument(..., help="province YAML (e.g. scenarios/zhejiang.yaml)"),
    month: int | None = typer.Option(None, min=0, help="roll-out month (default: the last)"),
    replications: int | None = REPLICATIONS,
    seed: int | None = SEED,
    workers: int = WORKERS,
    scheduler: str | None = typer.Option(None, help="Dask scheduler address (tcp://...)"),
    out: Path | None = typer.Option(None, help="output folder (default: "
                                    "results/province, replaced)"),
    force: bool = FORCE,
    keep_patients: bool = typer.Option(False, help="also write every patient of the "
                                       "scenario flow (patients.parquet; large)"),
    demand_scale: float = typer.Option(1.0, min=0, max=1e6,
                                       help="scale of the demand CSV for Locust"),
    lhs: int = typer.Option(0, min=0, max=1000, help="also run the month N more times over "
                            "a Latin hypercube of every registered assumption (one "
                            "replication each): the interval the province's figures carry "
                            "for what nobody measured (province_lhs.csv)"),
) -> None:
    """Every hospital of every city for a day, both flows; the paper's figures beside."""
    from twin.experiments.province import plan, run_province, write_outputs
    from twin.scenario.province import load_province

    try:
        prov = load_province(scenario)
    except ScenarioError as exc:
        errors.print(f"[red]scenario error[/]\n{exc}")
        raise typer.Exit(2) from None
    month = month if month is not None else max(
        max(c.adoption_by_month) for c in prov.cities)
    out = _out_dir(out, Path("results/province"), force)
    tasks = plan(prov, scenario.parent, month, replications or prov.replications, seed,
                 keep_patients)
    with _progress() as bar:
        task = bar.add_task(f"{prov.name}, month {month}: {prov.visits_per_day():,} "
                            "visits/day x 2 flows", total=len(tasks))
        res = run_province(prov, scenario.parent, month=month, workers=workers,
                           scheduler=scheduler, tasks=tasks,
                           progress=lambda n: bar.advance(task, n))
    cities, paper, peaks = write_outputs(res, prov, month, out, demand_scale)
    table = Table(title=f"{prov.name}, month {month}: time saved per visit by city")
    for c in ("city", "hospitals", "adoption", "visits/day", "min saved (95% CI)",
              "days saved/yr", "kiosks trad→online", "windows trad→online"):
        table.add_column(c, justify="left" if c == "city" else "right")
    for _, r in cities.iterrows():
        table.add_row(r.city, f"{r.hospitals}", f"{r.adoption:.0%}", f"{r.visits_per_day:,.0f}",
                      f"{r.minutes_saved_per_visit:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]",
                      f"{r.days_saved_per_year:,.0f}",
                      f"{r.kiosks_needed_traditional:,.0f}→{r.kiosks_needed_scenario:,.0f}",
                      f"{r.windows_needed_traditional:,.0f}→{r.windows_needed_scenario:,.0f}")
    console.print(table)
    ptable = Table(title="The paper's figures beside the model's")
    for c in ("figure", "paper", "model", "difference"):
        ptable.add_column(c, justify="left" if c == "figure" else "right")
    for _, r in paper.iterrows():
        ptable.add_row(r.figure, f"{r.paper:,.1f}", f"{r.model:,.1f}",
                       f"{r.difference:+,.1f} ({r.relative:+.0%})")
    console.print(ptable)
    v = peaks["verify"]
    console.print(f"QR verifications: {v['per_day']:,}/day, peak {v['peak_per_s']}/s at "
                  f"{v['peak_at']}, 99th-percentile second {v['p99_per_s']:.0f}/s; "
                  f"all calls peak {peaks['total']['peak_per_s']}/s; of the scans "
                  f"{peaks['retail']['per_day']:,}/day at retail pharmacies, "
                  f"{peaks['kiosk']['per_day']:,} phone calls to the hospitals' kiosk")
    console.print(f"wrote hospitals.csv, cities.csv, paper_comparison.csv, demand.csv, "
                  f"demand_by_city.csv, demand_peaks.json and plots to {out}")
    if lhs:
        _province_lhs(prov, scenario.parent, month, lhs, workers, seed, out)


def _province_lhs(prov, base_dir: Path, month: int, samples: int, workers: int,
                  seed: int | None, out: Path) -> None:
    """The province's month over the assumptions' ranges: the interval it carries."""
    from twin.experiments.province import assumption_samples, plan
    from twin.experiments.sensitivity import interval

    per_run = len(plan(prov, base_dir, month, 1, seed))
    with _progress() as bar:
        task = bar.add_task(f"{samples} samples of the assumptions", total=samples * per_run)
        df = assumption_samples(prov, base_dir, month, samples, workers=workers, seed=seed,
                                progress=lambda n: bar.advance(task, n))
    write_table(df, out / "province_lhs.csv")
    mid, low, high = interval(df)
    days = interval(df.assign(saved=df.days_saved_per_year))
    console.print(f"over the assumptions' ranges ({samples} Latin-hypercube samples, 95 % "
                  f"of them): {mid:.1f} min saved per visit ({low:.1f}-{high:.1f}), "
                  f"{days[0] / 1e6:.2f} M days a year ({days[1] / 1e6:.2f}-"
                  f"{days[2] / 1e6:.2f} M); wrote province_lhs.csv")


@app.command()
def rollout(
    scenario: Path = typer.Argument(..., help="province YAML (e.g. scenarios/province/"
                                    "zhejiang.yaml)"),
    months: str = typer.Option("0,6,12,18,24,30,36", help="comma-separated months of the "
                               "roll-out"),
    replications: int | None = REPLICATIONS,
    seed: int | None = SEED,
    workers: int = WORKERS,
    scheduler: str | None = typer.Option(None, help="Dask scheduler address (tcp://...): "
                                         "the hospitals of each month on a cluster"),
    out: Path | None = typer.Option(None, help="output folder (default: "
                                    "results/province/rollout, replaced)"),
    force: bool = FORCE,
) -> None:
    """The roll-out path: the province month by month (each month exactly what 'twin
    province --month' gives with the same seeds), rollout.csv and rollout.png."""
    from twin.experiments.rollout import plan_rollout, run_rollout
    from twin.report.plots import rollout_plot
    from twin.scenario.province import load_province

    try:
        prov = load_province(scenario)
        chosen = sorted({int(m) for m in months.split(",")})
        if any(m < 0 for m in chosen):
            raise ValueError("months are 0 or more")
    except ScenarioError as exc:
        errors.print(f"[red]scenario error[/]\n{exc}")
        raise typer.Exit(2) from None
    except ValueError:
        errors.print("[red]--months takes whole months 0 or more, like 0,12,24,36[/]")
        raise typer.Exit(2) from None
    out = _out_dir(out, Path("results/province/rollout"), force)
    path = plan_rollout(prov, scenario.parent, chosen, replications or prov.replications, seed)
    with _progress() as bar:
        task = bar.add_task(f"{prov.name}: {len(chosen)} months, {len(path.tasks)} distinct "
                            f"chunks of hospitals (of {path.chunks_without_reuse}), then "
                            "their distinct all-traditional days", total=len(path.tasks))
        df = run_rollout(prov, scenario.parent, chosen, workers=workers, scheduler=scheduler,
                         seed=seed, replications=replications, path=path,
                         progress=lambda n: bar.advance(task, n),
                         more=lambda n: bar.update(task, total=len(path.tasks) + n))
    write_table(df, out / "rollout.csv")
    rollout_plot(df, out / "rollout.png", f"{prov.name}: the roll-out, month by month")
    table = Table(title=f"{prov.name}: the roll-out path")
    for c in ("month", "card visits", "min saved (95% CI)", "days saved/yr", "windows needed",
              "kiosks needed", "peak verify/s"):
        table.add_column(c, justify="right")
    for _, r in df.iterrows():
        table.add_row(f"{r.month:.0f}", f"{r.adoption:.0%}",
                      f"{r.minutes_saved_per_visit:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]",
                      f"{r.days_saved_per_year:,.0f}", f"{r.windows_needed_scenario:,.0f}",
                      f"{r.kiosks_needed_scenario:,.0f}", f"{r.verify_peak_per_s:,.0f}")
    console.print(table)
    console.print(f"wrote rollout.csv and rollout.png to {out}")


@app.command()
def sweep(
    scenario: Path = typer.Argument(..., help="hospital scenario YAML"),
    set_: list[str] = typer.Option([], "--set", help="KEY=V1,V2,... : any scenario key "
                                   "over these values, as a scenario file writes them "
                                   "(e.g. --set resources.registration_windows=20,30 --set "
                                   "online.slot_length='15 min,30 min'); repeat for a grid"),
    adoption: str | None = typer.Option(None, help="comma-separated shares (0,0.5,1 or "
                                        "0%,50%,100%); without --set the default is "
                                        "0,0.2,0.4,0.6,0.8,1"),
    kiosks: str | None = typer.Option(None, help="comma-separated kiosk counts "
                                      "(default: the scenario's)"),
    replications: int = typer.Option(3, "--replications", "-r", min=1),
    seed: int | None = SEED,
    workers: int = WORKERS,
    out: Path | None = typer.Option(None, help="output folder (default: "
                                    "results/twin/sweep, replaced)"),
    force: bool = FORCE,
) -> None:
    """Any what-if: every combination of the values given (the roll-out sweep of adoption
    x kiosks by default), on the same patients, each paired with its all-traditional
    day; sweep.csv (one row per combination), sweep_long.csv (tidy), a plot per KPI."""
    from twin.experiments.sweep import run_grid, tidy
    from twin.report.plots import grid_plots, sweep_plot
    from twin.scenario.assumptions import with_value

    sc = _load(scenario)
    settings: dict[str, list] = {}
    try:
        for item in set_:
            key, _, listed = item.partition("=")
            if not listed:
                raise ValueError(f"--set {item!r}: give KEY=V1,V2,...")
            settings[key.strip()] = [_number_or_text(v) for v in listed.split(",")]
        if adoption is not None or not settings:
            settings["demand.adoption"] = [
                fraction(_number_or_text(a)) for a in (adoption or "0,0.2,0.4,0.6,0.8,1")
                .split(",")]
        if kiosks:
            settings["resources.kiosks"] = [int(k) for k in kiosks.split(",")]
        for key, given in settings.items():  # every value checked before anything runs
            for v in given:
                try:
                    with_value(sc, key, v)
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ValueError(f"{key} = {v!r}: {msg}") from None
    except (ValueError, KeyError) as exc:
        said = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        errors.print(f"[red]{said}[/] (--adoption takes shares like "
                     "0,0.5,1 or 0%,50%,100%, --kiosks whole numbers, --set KEY=V1,V2 any "
                     "scenario key: see 'ehc twin params')")
        raise typer.Exit(2) from None
    out = _out_dir(out, Path("results/twin/sweep"), force)
    keys = list(settings)
    runs = math.prod(len(given) for given in settings.values())
    with _progress() as bar:
        task = bar.add_task(f"what-if over {', '.join(keys)}", total=runs * replications)
        df = run_grid(sc, settings, replications, seed=seed, workers=workers,
                      progress=lambda n: bar.advance(task, n))
    short = {"demand.adoption": "adoption", "resources.kiosks": "kiosks"}  # as before
    df, keys = df.rename(columns=short), [short.get(k, k) for k in keys]
    write_table(df, out / "sweep.csv")
    tidy(df, keys).to_csv(out / "sweep_long.csv", index=False)
    grid_plots(df, keys, out)
    if set(keys) <= {"adoption", "kiosks"}:  # the roll-out picture
        sweep_plot(df if "kiosks" in df else df.assign(kiosks=sc.resources.kiosks),
                   out / "sweep.png")
    table = Table(title=f"What-if: {sc.name}, {replications} replications each (paired)")
    for c in (*keys, "min saved (95% CI)", "visit time", "registration wait", "doctor wait"):
        table.add_column(c, justify="right", overflow="fold")
    for i, r in df.iterrows():
        table.add_row(*[str(df.at[i, k]) for k in keys],
                      f"{r.time_saved:.1f} [{r.time_saved_low:.1f}, {r.time_saved_high:.1f}]",
                      f"{r.visit_time:.1f}", f"{r.wait_registration:.1f}",
                      f"{r.wait_doctor:.1f}")
    console.print(table)
    console.print(f"wrote sweep.csv, sweep_long.csv and a plot per KPI to {out}")


@app.command()
def sensitivity(
    scenario: Path = typer.Argument(..., help="hospital scenario YAML (adoption above 0)"),
    replications: int = typer.Option(3, "--replications", "-r", min=1),
    seed: int | None = SEED,
    workers: int = WORKERS,
    force: bool = FORCE,
    out: Path | None = typer.Option(None, help="output folder (default "
                                    "results/twin/NAME-sensitivity)"),
    lhs: int = typer.Option(0, "--lhs", min=0, max=2000, help="also a probabilistic run: "
                            "this many Latin-hypercube samples of every assumption at once"),
) -> None:
    """Each registered assumption at its low and high end, one at a time, with common
    random numbers: its weight on the saving (table, sensitivity.csv, tornado.png); with
    --lhs N, all of them drawn together N times: the interval the saving carries for what
    nobody measured (lhs.csv, lhs.png)."""
    from twin.experiments.sensitivity import interval, one_at_a_time, probabilistic
    from twin.report.plots import saving_spread, tornado
    from twin.scenario.assumptions import ASSUMPTIONS

    sc = _load(scenario)
    if sc.demand.adoption <= 0:
        errors.print("[red]the scenario has no card users (adoption 0): nothing is saved[/]")
        raise typer.Exit(2)
    out = _out_dir(out, Path("results/twin") / f"{sc.name}-sensitivity", force)
    with _progress() as bar:
        task = bar.add_task("sensitivity", total=(2 * len(ASSUMPTIONS) + 1) * replications)
        df = one_at_a_time(sc, replications, seed=seed, workers=workers,
                           progress=lambda n: bar.advance(task, n))
    write_table(df, out / "sensitivity.csv")
    tornado(df, out / "tornado.png", f"{sc.name}: minutes saved, each assumption at its ends")
    table = Table(title=f"{sc.name}: minutes saved per shown visit "
                        f"(base {df.saved_base.iloc[0]:.1f}), {replications} replications")
    for c in ("assumption", "range", "at low", "at high", "swing"):
        table.add_column(c, justify="left" if c in ("assumption", "range") else "right")
    for _, r in df.iterrows():
        table.add_row(r.assumption, f"{r.low} … {r.high}", f"{r.saved_low:.1f}",
                      f"{r.saved_high:.1f}", f"{r.swing:+.1f}")
    console.print(table)
    console.print(f"wrote sensitivity.csv and tornado.png to {out}")
    if lhs:
        with _progress() as bar:
            task = bar.add_task("latin hypercube", total=lhs * replications)
            samples = probabilistic(sc, lhs, replications, seed=seed, workers=workers,
                                    progress=lambda n: bar.advance(task, n))
        band = interval(samples)
        samples.to_csv(out / "lhs.csv", index=False)
        saving_spread(samples, out / "lhs.png", f"{sc.name}: saving over the assumptions' "
                      f"ranges ({lhs} samples)", band)
        console.print(f"saving with every assumption drawn in its range ({lhs} samples x "
                      f"{replications} replications): median {band[0]:.1f} min, 95 % "
                      f"{band[1]:.1f}–{band[2]:.1f} min (lhs.csv, lhs.png)")


@app.command()
def optimise(
    scenario: Path = typer.Argument(..., help="hospital scenario YAML"),
    target: str = typer.Option("p90 wait <= 10 min", help="the service level every hour "
                               "must meet at every station optimised, e.g. 'p80 wait <= 5 min'"),
    stations: str = typer.Option("registration_windows,payment_windows,pharmacy_windows",
                                 help="which to staff (comma-separated): registration_windows,"
                                 " payment_windows, pharmacy_windows, kiosks"),
    replications: int = typer.Option(3, "--replications", "-r", min=1, help="per search "
                                     "round (the verification run uses twice as many)"),
    seed: int | None = SEED,
    out: Path | None = typer.Option(None, help="output folder (default: "
                                    "results/twin/NAME-optimised, replaced)"),
    force: bool = FORCE,
) -> None:
    """The fewest windows (and kiosks) per hour that meet a service level, by simulation
    on the same patients: plan.yaml (a scenario that extends this one with the shifts),
    schedule.csv beside today's staffing, and the verification run's service levels."""
    from twin.experiments.optimise import (
        STATIONS,
        Target,
        current_staff_hours,
        plan_file,
        schedule_frame,
    )
    from twin.experiments.optimise import (
        optimise as search,
    )
    from twin.report.plots import schedule_plot

    sc = _load(scenario)
    keys = [k.strip() for k in stations.split(",") if k.strip()]
    try:
        goal = Target.parse(target)
        if not keys or set(keys) - set(STATIONS):
            raise ValueError(f"--stations names some of {', '.join(STATIONS)}")
    except ValueError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    out = _out_dir(out, Path("results/twin") / f"{sc.name}-optimised", force)
    with console.status(f"searching for the fewest servers meeting {goal} ..."):
        try:
            plan = search(sc, goal, keys, replications, seed=seed,
                          progress=lambda msg: console.print(f"  {msg}"))
        except ValueError as exc:
            errors.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    path = plan_file(plan, scenario, goal, out)
    schedule = schedule_frame(plan, sc)
    write_table(schedule, out / "schedule.csv")
    write_table(plan.checks, out / "verification.csv")
    title = f"{sc.name}: servers per hour " + (f"searched for {goal}, NOT met"
                                                if plan.missed else f"meeting {goal}")
    schedule_plot(schedule, out / "schedule.png", title)
    table = Table(title=title)
    table.add_column("station")
    hours = sorted(schedule.hour.unique())
    for h in hours:
        table.add_column(f"{h:02d}", justify="right")
    for station, g in schedule.groupby("station", sort=False):
        by_hour = dict(zip(g.hour, g.servers, strict=True))
        table.add_row(station, *[str(by_hour.get(h, "")) for h in hours])
    console.print(table)
    now = current_staff_hours(sc, keys)
    console.print(f"staff hours a day: {plan.staff_hours()} (today's plan: {now}, "
                  f"{plan.staff_hours() - now:+d}); {plan.rounds} simulated days searched")
    for _, r in plan.checks.iterrows():
        console.print(f"  {r.station}: {r.within_target:.1%} of uses within "
                      f"{goal.wait:g} min (95 % CI {r.within_low:.1%}-{r.within_high:.1%})")
    console.print(f"wrote {path.name} (run it: ehc twin run {path}), schedule.csv, "
                  f"schedule.png and verification.csv to {out}")
    if plan.missed:  # the search ran out of rounds: not a plan that meets the target
        where = ", ".join(f"{station} {h:02d}:00" for station, h in plan.missed[:6])
        errors.print(f"[red]{goal} NOT met after {plan.rounds} simulated days[/] at "
                     f"{len(plan.missed)} station-hour(s) ({where}"
                     f"{', ...' if len(plan.missed) > 6 else ''}): the target may be out of "
                     "reach of more servers (a wait that arrival bursts alone exceed)")
        raise typer.Exit(1)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8050, min=1, max=65535, help="TCP port"),
    scenarios: Path = typer.Option(Path("scenarios"), help="the folder of hospital scenarios "
                                   "the page offers"),
    out: Path = typer.Option(Path("results/ui"), help="where each run's files go"),
) -> None:
    """A page for planners: pick a hospital, change adoption, staffing, opening hours,
    run, and see the comparison, the service levels and the plots, with a progress bar
    and a download of the results."""
    import uvicorn

    from twin.ui.app import build_ui

    if not scenarios.is_dir():
        errors.print(f"[red]--scenarios {scenarios} is not a folder[/]")
        raise typer.Exit(2)
    from services.sdk import listen_problem

    if problem := listen_problem(host, port):  # before the page's address is printed
        errors.print(problem, style="red", markup=False)
        raise typer.Exit(2)
    console.print(f"the planners' page: http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(build_ui(scenarios, out), host=host, port=port, log_level="warning")


@app.command()
def calibrate(
    scenario: Path = typer.Argument(..., help="the baseline hospital scenario YAML"),
    replications: int = typer.Option(3, "--replications", "-r", min=2,
                                     help="replications per candidate and for the check"),
    workers: int = WORKERS,
    write: bool = typer.Option(False, "--write", help="write the fitted staffing into "
                               "SCENARIO (with its source)"),
    check_only: bool = typer.Option(False, "--check", help="no fitting: the scenario as it "
                                    "is, against every target"),
    from_records: Path | None = typer.Option(None, "--from-records", help="instead: estimate "
                                             "adoption, test and prescription shares and the "
                                             "hourly profile from the records in this store "
                                             "(ehc data collect)"),
    out: Path | None = typer.Option(None, help="with --from-records: the scenario written "
                                    "(default: SCENARIO_from_records.yaml beside it)"),
    visits: float | None = typer.Option(None, min=1, help="with --from-records: the day's "
                                        "visits by the hospital's count (default: the "
                                        "scenario's daily visits)"),
    code_share: float | None = typer.Option(None, min=0, max=0.9, help="with --from-records: "
                                            "traditional patients whose code scans are in "
                                            "the records (default: the scenario's; 0 for a "
                                            "co-simulated store)"),
) -> None:
    """Fit the baseline's windows and consulting rooms to the measured waits
    (docs/sources.md), then print every target beside the model (mean, 95 % CI, band): the fitted
    ones, and the "after" figures and the paper's 20 minutes, reported, never fitted. With
    --from-records, estimate the scenario's inputs from the network's records instead."""
    from datetime import date

    from twin.experiments.calibrate import fit, validate, write_fit

    sc = _load(scenario)
    if from_records is not None:
        _from_records(scenario, sc, from_records, out, visits, code_share)
        return
    if not check_only:
        with console.status("fitting (bisection, common random numbers)") as status:
            f = fit(sc, replications, workers, progress=lambda m: status.update(m))
        r = f.scenario.resources
        console.print(f"fitted: windows x{f.windows:.3f} ({r.registration_windows} "
                      f"registration, {r.payment_windows} payment, {r.pharmacy_windows} "
                      f"pharmacy), consulting rooms x{f.doctors:.3f} "
                      f"({sum(d.doctors for d in f.scenario.hospital.departments)} in all)")
        sc = f.scenario
        if write:
            write_fit(scenario, f, date.today().isoformat())
            console.print(f"wrote the fitted staffing into {scenario}")
    with console.status("checking every target"):
        checks = validate(sc, replications, workers)
    table = Table(title=f"{sc.name}: targets (docs/sources.md) beside the model, "
                        f"{replications} replications")
    for c in ("target", "measured", "band", "model", "95 % CI", "kind", "within"):
        table.add_column(c, justify="left" if c in ("target", "kind") else "right")
    for ch in checks:
        t = ch.target
        table.add_row(t.label, f"{t.measured:g}", f"±{t.tolerance:g}", f"{ch.mean:.2f}",
                      f"{ch.low:.2f} – {ch.high:.2f}", "fitted" if t.fitted else "reported",
                      "yes" if ch.within else "[yellow]no[/]")
    console.print(table)
    console.print("'after' figures are the same hospital at full adoption; the measured "
                  "ones come from partial use (about 2020), so the model's windows are "
                  "emptier than the measured 2.61 min. The paper's 20 minutes is a "
                  "province-wide average over real, partial use.")
    if any(not ch.within for ch in checks if ch.target.fitted):
        raise typer.Exit(1)


report_app = typer.Typer()


@report_app.command("report")
def report(
    out: Path | None = typer.Option(None, help="where the reports go (default: "
                                    "results/reports, replaced)"),
    force: bool = FORCE,
    small: bool = typer.Option(False, help="small, quick parameters"),
    only: list[str] | None = typer.Option(None, help="only these notebooks"),
) -> None:
    """Execute the analyst notebooks (papermill) and render them to HTML with an index."""
    from twin.report.notebooks import NOTEBOOKS, ReportFailed, build_reports

    unknown = set(only or []) - set(NOTEBOOKS)
    if unknown:
        errors.print(f"[red]unknown notebooks: {sorted(unknown)}; known: {list(NOTEBOOKS)}[/]")
        raise typer.Exit(2)
    out = _out_dir(out, Path("results") / "reports", force)
    try:
        done = build_reports(out, small=small, only=only,
                             progress=lambda n: console.print(f"executing {n}.ipynb ..."))
    except ReportFailed as exc:
        errors.print(f"[red]report failed[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        finished = ", ".join(sorted(p.stem for p in out.glob("*.html")
                                    if p.name != "index.html")) or "none"
        errors.print(f"[yellow]interrupted[/]: the finished reports ({finished}) are "
                     f"linked from {out / 'index.html'}", highlight=False)
        raise typer.Exit(130) from None
    console.print(f"wrote {len(done)} reports and index.html to {out}")


def _from_records(scenario: Path, sc, store: Path, out: Path | None, visits: float | None,
                  code_share: float | None) -> None:
    from twin.experiments.from_records import estimate, scenario_file

    try:
        found = estimate(store, sc, visits, code_share)
    except FileNotFoundError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    table = Table(title=f"{sc.name}: inputs estimated from {store}")
    for c in ("input", "scenario", "estimate", "standard error", "cards"):
        table.add_column(c, justify="right")
    for e in found:
        section, key, *rest = e.key.split(".")
        now = getattr(getattr(sc, section), key)
        now = now.get(int(rest[0]) if rest[0].isdigit() else rest[0], 0.0) if rest else now
        if key == "adoption_by_age":  # shown as the estimate is: mean 1 over the visits
            now /= sum(sc.demand.age_shares[g] * f for g, f in
                       sc.demand.adoption_by_age.items())
        table.add_row(e.key, f"{now:.3f}", f"{e.value:.3f}", f"{e.se:.3f}", f"{e.n:,}")
    console.print(table)
    if not any(e.key.startswith("day.hourly_profile") for e in found):
        console.print("hourly profile: the records' first scans fall in fewer than 3 clock "
                      "hours (a co-simulated day runs in seconds): the scenario's is kept")
    target = out or scenario.with_name(f"{scenario.stem}_from_records.yaml")
    console.print(f"wrote {scenario_file(found, scenario, store, target)}")
