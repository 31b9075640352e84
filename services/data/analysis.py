"""Analysis of the collected records (DuckDB over the store's Parquet): issuance and use by
city, institution, step of care, hour, channel (code kind) and card medium (terminal
type), fused against plain, adoption per city over time, peak seconds and settlement
totals; and the same scan counts on Dask over the partitions, for a year of records that
one machine should not hold."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .store import Store, view_name

STEP_NAMES = {0: "other", 10101: "registration", 10102: "diagnosis", 10103: "pharmacy",
              10104: "examination", 10105: "payment", 10106: "prescription", 10107: "surgery"}
MEDIA = {1: "window (staff scanner)", 2: "self-service kiosk", 99: "other"}
# the paper's province figures (seed, section 4.4), shown beside the store's when the
# store is the province's
PAPER = {"EHC cards issued": 30_000_000, "fused cards": 1_200_000,
         "insurance settled (yuan)": 15_000_000}

SQL = {
    "scans_by_step_hour": """
        SELECT step, hour(CAST(verified_at AS TIMESTAMP)) AS hour, count(*) AS scans
        FROM ehc_usage GROUP BY ALL ORDER BY step, hour""",
    "scans_by_city": """
        SELECT city_code, count(*) AS scans, count(DISTINCT card_id) AS cards,
               count(*) FILTER (code_kind = 'fused') AS fused_scans
        FROM ehc_usage GROUP BY ALL ORDER BY scans DESC""",
    "scans_by_institution": """
        SELECT institution_code, count(*) AS scans, count(DISTINCT card_id) AS cards
        FROM ehc_usage GROUP BY ALL ORDER BY scans DESC""",
    "scans_by_channel_and_medium": """
        SELECT code_kind AS channel, terminal_type AS medium, count(*) AS scans
        FROM ehc_usage GROUP BY ALL ORDER BY scans DESC""",
    "fused_against_plain": """
        SELECT CAST(verified_at AS DATE) AS day,
               count(*) FILTER (code_kind = 'fused') AS fused,
               count(*) FILTER (code_kind <> 'fused') AS plain
        FROM ehc_usage GROUP BY ALL ORDER BY day""",
    "adoption_by_city_day": """
        SELECT city_code, CAST(verified_at AS DATE) AS day,
               count(DISTINCT card_id) FILTER (code_kind = 'fused') * 1.0
                 / count(DISTINCT card_id) AS fused_share_of_cards
        FROM ehc_usage GROUP BY ALL ORDER BY city_code, day""",
    "peak_seconds": """
        SELECT date_trunc('second', CAST(verified_at AS TIMESTAMP)) AS second,
               count(*) AS scans
        FROM ehc_usage GROUP BY ALL ORDER BY scans DESC, second LIMIT 10""",
    "issuance_by_issuer_day": """
        SELECT issuer, CAST(min(created_at) AS DATE) AS day, count(*) AS cards
        FROM (SELECT card_id, issuer, min(CAST(created_at AS TIMESTAMP)) AS created_at
              FROM ehc_cards GROUP BY card_id, issuer)
        GROUP BY issuer, CAST(created_at AS DATE) ORDER BY day, issuer""",
    "settlement_totals": """
        SELECT CAST(updated_at AS DATE) AS day, channel, count(*) AS visits,
               sum(total_fen) AS total_fen, sum(fund_fen) AS fund_fen,
               sum(account_fen) AS account_fen, sum(cash_fen) AS cash_fen
        FROM (SELECT * FROM essc_settlements QUALIFY row_number() OVER (
                PARTITION BY settlement_id ORDER BY updated_at DESC) = 1)
        WHERE state = 'settled' GROUP BY ALL ORDER BY day, channel""",
}


def aggregate(store: Store, name: str) -> pd.DataFrame:
    return store.connect().execute(SQL[name]).df()


def all_aggregates(store: Store) -> dict[str, pd.DataFrame]:
    con = store.connect()
    return {name: con.execute(sql).df() for name, sql in SQL.items()}


def paper_beside(store: Store) -> pd.DataFrame:
    """The paper's province figures beside the store's own counts (the same only when
    the store holds the province's records)."""
    con = store.connect()
    cards = con.execute("SELECT count(DISTINCT card_id) FROM ehc_cards").fetchone()[0]
    fused = con.execute("SELECT count(DISTINCT ehc_card_id) FROM ehc_bindings "
                        "WHERE state = 'bound'").fetchone()[0]
    settled = aggregate(store, "settlement_totals")
    fund = float(settled[["fund_fen", "account_fen"]].sum().sum()) / 100
    ours = {"EHC cards issued": cards, "fused cards": fused,
            "insurance settled (yuan)": fund}
    return pd.DataFrame([{"figure": k, "paper (province)": v, "this store": ours[k]}
                         for k, v in PAPER.items()])


def scans_by_step_hour_dask(store_path: Path, client=None) -> pd.DataFrame:
    """:data:`SQL`'s ``scans_by_step_hour`` on Dask over the Parquet partitions (on
    ``client``'s cluster, or the local scheduler)."""
    import dask.dataframe as dd

    files = sorted(str(p) for p in (Path(store_path) / "ehc.usage").glob("day=*/*.parquet"))
    df = dd.read_parquet(files, columns=["step", "verified_at"])
    df = df.assign(hour=dd.to_datetime(df.verified_at).dt.hour)
    counts = df.groupby(["step", "hour"]).size()
    out = (client.compute(counts).result() if client is not None else counts.compute())
    return (out.rename("scans").reset_index().sort_values(["step", "hour"])
            .reset_index(drop=True))


__all__ = ["MEDIA", "SQL", "STEP_NAMES", "aggregate", "all_aggregates", "paper_beside",
           "scans_by_step_hour_dask", "view_name"]
