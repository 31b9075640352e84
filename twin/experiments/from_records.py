"""A scenario's inputs estimated from the network's own records (the data resources
layer's store: Parquet partitions, read here with DuckDB; the store's layout is the
contract, the twin imports nothing of the stack):

- adoption: the cards used in a day against the day's visits (the hospital's own count),
  less the traditional patients who show a code anyway (``traditional_code_share``, an
  assumption the records cannot see past), over the patients who came (booked patients
  who never came leave no scan);
- test share and prescription share: the patients whose day has an examination scan
  (step 10104) and a pharmacy scan (10103), among those scanned at a doctor (10102):
  every station a card user passes scans their code, so their records are complete;
- adoption by age group: each group's card users against its visits (the scenario's age
  shares), as relative propensities; the cards' export gives each holder's age group (child
  under 18, elderly 60 and over), never a birth date;
- hourly profile: each card's first scan of a day, by clock hour of the records' time.
  (A co-simulated day runs in seconds of wall-clock time and the stack stamps its records
  with its own clock, so its records carry no profile: only real, or real-time, records do.)

Each estimate comes with its standard error (binomial; the delta method for adoption) and
its provenance (store, records, the assumptions used)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.rules.ages import AGE_GROUPS
from twin.scenario.schema import Scenario

EXAMINATION, PHARMACY, DOCTOR = 10104, 10103, 10102


@dataclass(frozen=True)
class Estimate:
    key: str  # the scenario key it estimates
    value: float
    se: float
    n: int  # the records (cards) it rests on
    how: str


def _cards(store: Path):
    import duckdb

    files = str(Path(store) / "ehc.usage" / "day=*" / "*.parquet")
    if not list(Path(store).glob("ehc.usage/day=*/*.parquet")):
        raise FileNotFoundError(f"{store}: no ehc.usage records (run 'ehc data collect')")
    con = duckdb.connect()
    holders = sorted(Path(store).glob("ehc.cards/day=*/*.parquet"))
    group = "NULL AS age_group"
    join = ""
    if holders:  # each card's latest version says its holder's age group
        cards = str(Path(store) / "ehc.cards" / "day=*" / "*.parquet")
        group = "any_value(c.age_group) AS age_group"
        join = f"""LEFT JOIN (SELECT card_id, arg_max(age_group, updated_at) AS age_group
                              FROM read_parquet('{cards}', hive_partitioning = true,
                                                union_by_name = true)
                              GROUP BY card_id) c USING (card_id)"""
    return con.execute(f"""
        SELECT card_id, CAST(verified_at AS DATE) AS day, {group},
               bool_or(code_kind = 'fused') AS fused,
               bool_or(step = {DOCTOR}) AS doctor,
               bool_or(step = {EXAMINATION}) AS examination,
               bool_or(step = {PHARMACY}) AS pharmacy,
               hour(min(CAST(verified_at AS TIMESTAMP))) AS first_hour
        FROM read_parquet('{files}', hive_partitioning = true) u {join}
        GROUP BY card_id, CAST(verified_at AS DATE)""").df()


def _share(key: str, hits: int, n: int, how: str) -> Estimate:
    p = hits / n if n else math.nan
    return Estimate(key, p, math.sqrt(p * (1 - p) / n) if n else math.nan, n, how)


def estimate(store: Path, base: Scenario, visits: float | None = None,
             code_share: float | None = None) -> list[Estimate]:
    """``visits``: the day's outpatient visits, from the hospital's own counts (default:
    the scenario's daily visits); ``code_share``: the share of traditional patients whose
    code scans are in the records (default: the scenario's ``traditional_code_share``; 0
    for a co-simulated store, where only online patients go through the stack)."""
    cards = _cards(store)
    days = max(cards.day.nunique(), 1)
    seen = cards[cards.doctor]
    out = [
        _share("demand.test_share", int(seen.examination.sum()), len(seen),
               "patients scanned at a doctor with an examination scan"),
        _share("demand.prescription_share", int(seen.pharmacy.sum()), len(seen),
               "patients scanned at a doctor with a pharmacy scan"),
    ]
    v = (visits or base.demand.daily_visits) * days
    s = base.demand.traditional_code_share if code_share is None else code_share
    shown = 1 - base.online.no_show_share
    users = len(cards)
    # card users = a x visits x (1 - no-show) + (1 - a) x visits x s
    a = (users / v - s) / (shown - s)
    se = math.sqrt(users) / v / (shown - s)  # the count of card users as Poisson
    out.append(Estimate("demand.adoption", min(max(a, 0.0), 1.0), se, users,
                        f"card users a day / {v / days:,.0f} visits, less traditional "
                        f"patients showing a code ({s:g}), over the shown (1 - no-show "
                        f"{base.online.no_show_share:g})"))
    out += _by_age(cards, base, v, s, shown)
    hours = cards.first_hour.value_counts()
    hours = hours.reindex(sorted(set(hours.index) | set(base.day.hourly_profile)),
                          fill_value=0)  # every hour of the base profile is replaced
    if (hours > 0).sum() >= 3:  # a profile needs the day spread over several hours
        mean = hours.mean()
        for h, n in hours.items():
            out.append(Estimate(f"day.hourly_profile.{int(h)}", round(n / mean, 3),
                                math.sqrt(n) / mean, int(n), "first scans of a card's day "
                                "in this clock hour, relative to the mean hour"))
    return out


def _by_age(cards, base: Scenario, visits: float, s: float, shown: float) -> list[Estimate]:
    """Each age group's propensity to use the card, relative (the twin scales them to the
    day's adoption): its card users against its visits (the scenario's age shares of the
    visits, an assumption), normalised to a mean of 1 over the visits."""
    if cards.age_group.isna().all():
        return []
    shares: dict[str, float] = {str(g): v for g, v in base.demand.age_shares.items()}
    rates, counts = {}, {}
    for g in AGE_GROUPS:
        counts[g] = int((cards.age_group == g).sum())
        v_g = visits * shares.get(g, 0.0)
        if v_g > 0:
            rates[g] = (counts[g] / v_g - s) / (shown - s)
    mean = sum(shares.get(g, 0.0) * r for g, r in rates.items())
    if mean <= 0:
        return []
    return [Estimate(f"demand.adoption_by_age.{g}", r / mean,
                     math.sqrt(counts[g]) / (visits * shares[g]) / (shown - s) / mean,
                     counts[g], f"{g}: card users / visits x age share "
                     f"{shares[g]:g}, relative to the day's mean")
            for g, r in rates.items()]


def scenario_file(estimates: list[Estimate], scenario: Path, store: Path, out: Path) -> Path:
    """A scenario that extends ``scenario`` with the estimates, each with its provenance."""
    import yaml

    body: dict[str, Any] = {"extends": str(scenario.resolve()),
                            "name": f"{scenario.stem}_from_records"}
    lines = [f"# Inputs estimated from the records in {store} (ehc twin calibrate "
             "--from-records):"]
    for e in estimates:
        section, key, *rest = e.key.split(".")
        target = body.setdefault(section, {})
        name: str | int = key
        if rest:  # day.hourly_profile.<hour>, demand.adoption_by_age.<group>
            target = target.setdefault(key, {})
            name = int(rest[0]) if rest[0].isdigit() else rest[0]
        target[name] = round(float(e.value), 4)
        lines.append(f"#   {e.key} = {e.value:.4f} (standard error {e.se:.4f}, {e.n} cards): "
                     f"{e.how}")
    out.write_text("\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False),
                   encoding="utf-8")
    return out
