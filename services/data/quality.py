"""Governance (the quality layer): rules declared per source and across systems, run as
SQL over the analytics store; every breach is listed with the row it was found in, and
each day gets a count per rule and a quality score (the share of checked rows without a
breach).

The rules, by kind:
- completeness: a required field is empty;
- validity: a code outside its set (step of care, terminal type, institution code, card
  numbers, ledger postings, settlement states);
- uniqueness: a row kept twice (the same key, or the same version of a keyed row);
- timeliness: a usage record shared with the other card system later than
  ``late_after_s`` after the scan (a late sync);
- consistency across systems: a bound card's scan on one side missing from the other
  side's shared records (a dropped record), a settlement whose ledger postings are missing
  or do not balance, a posting whose settlement does not exist (an orphan), a binding one
  side holds and the other does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..rules.codes import Step, TerminalType
from .store import Store

STEPS = ", ".join(str(int(s)) for s in Step)
TERMINALS = ", ".join(str(int(t)) for t in TerminalType)
SETTLEMENT_STATES = ("uploaded", "presettled", "paying", "awaiting_confirmation", "settled",
                     "payment_failed", "reversed", "cancelled", "unresolved")
POSTED = ("paying", "awaiting_confirmation", "settled", "payment_failed", "reversed",
          "unresolved")
INSTITUTION = "'^[0-9A-Z]{12}$'"


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    source: str  # the view whose rows it checks
    sql: str  # SELECT day, key, detail FROM ... (one row per breach)
    needs: tuple[str, ...] = ()  # other views it reads


def _required(source: str, key: str, fields: tuple[str, ...]) -> Rule:
    missing = " OR ".join(f"{f} IS NULL" for f in fields)
    which = " || ".join(f"CASE WHEN {f} IS NULL THEN '{f} ' ELSE '' END" for f in fields)
    return Rule(f"{source}: required fields", "completeness", source,
                f"SELECT day, CAST({key} AS VARCHAR) AS key, 'empty: ' || {which} AS detail "
                f"FROM {source} WHERE {missing}")


def _scan_validity(source: str, card: str, card_pattern: str) -> Rule:
    return Rule(f"{source}: codes", "validity", source, f"""
        SELECT day, CAST(id AS VARCHAR) AS key,
               concat_ws(', ',
                 CASE WHEN step NOT IN ({STEPS}) THEN 'step ' || step END,
                 CASE WHEN terminal_type NOT IN ({TERMINALS})
                      THEN 'terminal type ' || terminal_type END,
                 CASE WHEN NOT regexp_full_match(institution_code, {INSTITUTION})
                      THEN 'institution ' || institution_code END,
                 CASE WHEN NOT regexp_full_match({card}, '{card_pattern}')
                      THEN 'card number' END) AS detail
        FROM {source}
        WHERE step NOT IN ({STEPS}) OR terminal_type NOT IN ({TERMINALS})
           OR NOT regexp_full_match(institution_code, {INSTITUTION})
           OR NOT regexp_full_match({card}, '{card_pattern}')""")


def _unique(source: str, key: str) -> Rule:
    return Rule(f"{source}: kept once", "uniqueness", source, f"""
        SELECT min(day) AS day, CAST({key} AS VARCHAR) AS key,
               'kept ' || count(*) || ' times' AS detail
        FROM {source} GROUP BY {key} HAVING count(*) > 1""")


def _shared(side: str, peer: str, late_after_s: int) -> list[Rule]:
    """The usage records of bound cards that ``side`` wrote, as held by ``peer``."""
    card = "card_id" if side == "ehc" else "ssc_card_no"
    bound = "ehc_card_id" if side == "ehc" else "ssc_card_no"
    return [
        Rule(f"{side} usage shared with {peer}", "consistency", f"{side}_usage", f"""
            SELECT u.day, CAST(u.id AS VARCHAR) AS key,
                   'a bound card''s record the ' || '{peer}' || ' side never received'
                   AS detail
            FROM {side}_usage u
            WHERE u.{card} IN (SELECT {bound} FROM {side}_bindings WHERE state = 'bound')
              AND u.id <= (SELECT max(source_id) FROM {peer}_shared_usage
                           WHERE source = '{side}')
              AND u.id NOT IN (SELECT source_id FROM {peer}_shared_usage
                               WHERE source = '{side}')""",
             (f"{side}_bindings", f"{peer}_shared_usage")),
        Rule(f"{side} usage shared in time", "timeliness", f"{peer}_shared_usage", f"""
            SELECT day, CAST(id AS VARCHAR) AS key,
                   'received ' || CAST(date_diff('second', CAST("at" AS TIMESTAMP),
                                                 CAST(received_at AS TIMESTAMP)) AS VARCHAR)
                   || ' s after the scan' AS detail
            FROM {peer}_shared_usage
            WHERE source = '{side}'
              AND date_diff('second', CAST("at" AS TIMESTAMP),
                            CAST(received_at AS TIMESTAMP)) > {late_after_s}"""),
    ]


def rules(late_after_s: int = 3600) -> list[Rule]:
    ledger_sum = """(SELECT settlement_id, count(*) AS n, sum(debit_fen) AS debit,
                            sum(credit_fen) AS credit FROM essc_ledger GROUP BY settlement_id)"""
    latest_settlement = """(SELECT * FROM essc_settlements QUALIFY row_number() OVER (
                              PARTITION BY settlement_id ORDER BY updated_at DESC) = 1)"""
    return [
        _required("ehc_usage", "id", ("card_id", "empi", "institution_code", "terminal_id",
                                      "step", "verified_at")),
        _required("essc_usage", "id", ("ssc_card_no", "institution_code", "terminal_id",
                                       "step", "verified_at")),
        _required("essc_settlements", "settlement_id", ("institution_code", "ssc_card_no",
                                                        "state", "total_fen")),
        _required("ehc_cards", "card_id", ("empi", "state", "issuer", "created_at")),
        _scan_validity("ehc_usage", "card_id", "[0-9A-F]{64}"),
        _scan_validity("essc_usage", "ssc_card_no", "[0-9A-Z]{1,20}"),
        Rule("essc_settlements: states", "validity", "essc_settlements", f"""
            SELECT day, settlement_id AS key, 'state ' || state AS detail
            FROM essc_settlements WHERE state NOT IN {SETTLEMENT_STATES}"""),
        _unique("ehc_usage", "id"), _unique("essc_usage", "id"), _unique("essc_ledger", "id"),
        _unique("ehc_shared_usage", "id"), _unique("essc_shared_usage", "id"),
        _unique("essc_settlements", "settlement_id || '@' || CAST(updated_at AS VARCHAR)"),
        *_shared("ehc", "essc", late_after_s), *_shared("essc", "ehc", late_after_s),
        Rule("settlements posted to the ledger", "consistency", "essc_settlements", f"""
            SELECT s.day, s.settlement_id AS key,
                   CASE WHEN l.n IS NULL THEN 'no ledger postings'
                        ELSE 'postings do not balance: debit ' || l.debit || ' credit '
                             || l.credit END AS detail
            FROM {latest_settlement} s LEFT JOIN {ledger_sum} l USING (settlement_id)
            WHERE s.state IN {POSTED} AND (l.n IS NULL OR l.debit <> l.credit)""",
             ("essc_ledger",)),
        Rule("ledger postings of a known settlement", "consistency", "essc_ledger", """
            SELECT day, CAST(id AS VARCHAR) AS key,
                   'posting of unknown settlement ' || settlement_id AS detail
            FROM essc_ledger
            WHERE settlement_id NOT IN (SELECT settlement_id FROM essc_settlements)""",
             ("essc_settlements",)),
        Rule("hospital_bookings: states", "validity", "hospital_bookings", """
            SELECT day, booking_id AS key, 'state ' || state AS detail
            FROM hospital_bookings
            WHERE state NOT IN ('booked', 'cancelled', 'checked_in', 'called', 'no_show')"""),
        _unique("hospital_checkins", "id"),
        Rule("check-ins of a known booking", "consistency", "hospital_checkins", """
            SELECT day, CAST(id AS VARCHAR) AS key,
                   'check-in of unknown booking ' || booking_id AS detail
            FROM hospital_checkins
            WHERE booking_id IS NOT NULL
              AND booking_id NOT IN (SELECT booking_id FROM hospital_bookings)""",
             ("hospital_bookings",)),
        Rule("hospital bills settled on the e-SSC side", "consistency", "hospital_bills", f"""
            SELECT b.day, b.bill_id AS key,
                   'paid by essc, settlement ' || b.settlement_id || ' '
                   || coalesce(s.state, 'unknown to the e-SSC') AS detail
            FROM (SELECT * FROM hospital_bills QUALIFY row_number() OVER (
                    PARTITION BY bill_id ORDER BY updated_at DESC) = 1) b
            LEFT JOIN {latest_settlement} s USING (settlement_id)
            WHERE b.paid_by = 'essc' AND (s.state IS NULL OR s.state <> 'settled')""",
             ("essc_settlements",)),
        Rule("bindings held by both sides", "consistency", "ehc_bindings", """
            SELECT e.day, e.binding_id AS key, 'the e-SSC side does not hold it' AS detail
            FROM ehc_bindings e
            WHERE e.state = 'bound'
              AND e.binding_id NOT IN (SELECT binding_id FROM essc_bindings)""",
             ("essc_bindings",)),
    ]


def check(store: Store, late_after_s: int = 3600) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(breaches: one row per breach with its rule, kind, source, day, key and detail;
    per day: rows checked, breaches per rule and the quality score). A rule whose
    sources the store does not hold yet is skipped."""
    con = store.connect()
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                       "WHERE NOT internal").fetchall()}
    found = []
    for rule in rules(late_after_s):
        if not {rule.source, *rule.needs} <= views:
            continue
        df = con.execute(rule.sql).df()
        found.append(df.assign(rule=rule.name, kind=rule.kind, source=rule.source))
    breaches = (pd.concat(found, ignore_index=True) if found else
                pd.DataFrame(columns=["day", "key", "detail", "rule", "kind", "source"]))
    breaches = breaches[["day", "rule", "kind", "source", "key", "detail"]]
    breaches["day"] = breaches["day"].astype(str)
    checked = pd.concat([con.execute(f"SELECT CAST(day AS VARCHAR) AS day, count(*) AS n "
                                     f"FROM {v} GROUP BY day").df() for v in sorted(views)]) \
        .groupby("day").n.sum() if views else pd.Series(dtype=int)
    per_day = checked.rename("rows").to_frame()
    if len(breaches):  # a column per rule breached
        per_day = per_day.join(breaches.groupby(["day", "rule"]).size().unstack(fill_value=0),
                               how="outer")
    by_day = breaches.groupby("day")
    per_day["breaches"] = by_day.size()
    per_day = per_day.fillna(0)
    rows_breached = by_day.key.nunique().reindex(per_day.index, fill_value=0)
    per_day["score"] = (1 - rows_breached / per_day["rows"].clip(lower=1)).clip(lower=0)
    return breaches.reset_index(drop=True), per_day.reset_index(names="day")
