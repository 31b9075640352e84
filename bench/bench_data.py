"""The data resources layer: rows per second gathered from a co-simulated day's stack
into the store, against reading the same pages over HTTP without storing them (the
baseline: what the export routes give); and rows per second aggregated by DuckDB and by
Dask over a province-sized day of usage records (the day's records tiled to 2 million,
about the province's verifications a day), against pandas reading the same Parquet and
grouping in memory (the baseline).

    python -m bench.bench_data [--visits 1500] [--rows 2000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console

from services.common.db import EXPORT_SETTLE_S
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.data import analysis
from services.data.collect import SOURCES, collect
from services.data.store import Store
from services.sdk import AdminClient, start_in_thread
from twin.experiments.cosim import run_cosim
from twin.scenario.province import scale_hospital
from twin.scenario.schema import load_scenario

from .common import save


def read_pages(url: str, token: str, page_size: int) -> int:
    """Every source's pages over HTTP, kept nowhere: the rows the routes give."""
    rows = 0
    with httpx.Client(base_url=url, timeout=60,
                      headers={"authorization": f"Bearer {token}"}) as http:
        for system, name in SOURCES:
            cursor = None
            while True:
                params = {"limit": page_size, **({"after": cursor} if cursor else {})}
                page = http.get(f"/{system}/v1/export/{name}", params=params).json()
                rows += len(page["rows"])
                cursor = page["cursor"]
                if not page["more"]:
                    break
    return rows


def province_day(store: Store, rows: int, target: Path) -> int:
    """The store's usage records tiled to ``rows`` rows as one day's partition."""
    day = store.connect().execute("SELECT * EXCLUDE (day) FROM ehc_usage").df()
    copies = -(-rows // len(day))
    big = pd.concat([day.assign(id=day.id + i * 10**9) for i in range(copies)],
                    ignore_index=True).iloc[:rows]
    folder = target / "ehc.usage" / "day=2026-01-01"
    folder.mkdir(parents=True)
    big.to_parquet(folder / "tiled.parquet", index=False, row_group_size=250_000)
    return len(big)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name, default in (("--visits", 1500), ("--rows", 2_000_000), ("--page-size", 1000)):
        ap.add_argument(name, type=int, default=default)
    args = ap.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="ehc-bench-data-"))
    settings = Settings(var_dir=work / "var", log_level="WARNING", rate_limit_terminal_per_s=0)
    stack = start_in_thread(settings)
    try:
        sc = scale_hospital(load_scenario(Path("scenarios/tertiary_adoption_60.yaml")),
                            args.visits)
        run_cosim(sc, stack.url, stack.admin_token, work / "cosim")
        with AdminClient(stack.url, stack.admin_token) as admin:
            admin.pull_usage("ehc")
            admin.pull_usage("essc")
        token = deployment_secret(settings, "data_token")
        time.sleep(EXPORT_SETTLE_S)  # the exports hold back rows younger than this
        t0 = time.perf_counter()
        n_read = read_pages(stack.url, token, args.page_size)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = collect(stack.url, token, Store(work / "store"), page_size=args.page_size)
        collect_s = time.perf_counter() - t0
    finally:
        stack.stop()
    n_collected = sum(d.rows for d in done)
    big = Store(work / "province-day")
    n_big = province_day(Store(work / "store"), args.rows, big.path)
    t0 = time.perf_counter()
    pandas_counts = (pd.read_parquet(big.path / "ehc.usage", columns=["step", "verified_at"])
                     .assign(hour=lambda d: pd.to_datetime(d.verified_at).dt.hour)
                     .groupby(["step", "hour"]).size())
    pandas_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    duck = analysis.aggregate(big, "scans_by_step_hour")
    duck_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dask = analysis.scans_by_step_hour_dask(big.path)
    dask_s = time.perf_counter() - t0
    assert int(duck.scans.sum()) == int(dask.scans.sum()) == int(pandas_counts.sum()) == n_big
    result = {
        "collected_rows": n_collected, "collect_rows_per_s": n_collected / collect_s,
        "baseline_http_rows_per_s": n_read / read_s,
        "collect_vs_http": (n_collected / collect_s) / (n_read / read_s),
        "aggregated_rows": n_big, "duckdb_rows_per_s": n_big / duck_s,
        "dask_rows_per_s": n_big / dask_s, "baseline_pandas_rows_per_s": n_big / pandas_s,
        "duckdb_vs_pandas": pandas_s / duck_s, "dask_vs_pandas": pandas_s / dask_s,
    }
    console.print(f"collected {n_collected:,} rows at {result['collect_rows_per_s']:,.0f} "
                  f"rows/s ({result['collect_vs_http']:.2f}x reading the same pages over HTTP "
                  f"without storing: {result['baseline_http_rows_per_s']:,.0f} rows/s)")
    console.print(f"scans by step and hour over {n_big:,} rows: DuckDB "
                  f"{result['duckdb_rows_per_s']:,.0f} rows/s ({result['duckdb_vs_pandas']:.1f}x "
                  f"pandas), Dask {result['dask_rows_per_s']:,.0f} rows/s "
                  f"({result['dask_vs_pandas']:.1f}x pandas: "
                  f"{result['baseline_pandas_rows_per_s']:,.0f} rows/s)")
    console.print("wrote", save("data", result))


if __name__ == "__main__":
    main()
