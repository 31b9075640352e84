"""The day's settlement reconciliation: each visit's ledger postings against its state
and split, the gateway's statement against the cash parts, and the e-SSC usage record
each committed visit must have. Every difference is listed; none is repaired silently.

The gateway dates a payment by its own clock: a visit settled at 23:59:59 China Standard
Time may be paid at 00:00:01 the next day. A day's visits are paired with their payments
by order ID in that day's statement and the next day's; a payment of the day whose visit
was made the day before is that day's, not unknown here."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from .settlement import ACCOUNTS, CLEARING, FUND, RECEIVABLE, Settlements
from .tables import bindings, ledger, usage_records

COMMITTED = ("paying", "awaiting_confirmation", "unresolved", "settled", "payment_failed",
             "reversed")
RETURNED = ("reversed", "payment_failed")  # the insurance part given back


def expected_postings(s: Any, gateway_status: str | None) -> dict[tuple[str, str], tuple]:
    """(posting, account) -> (debit, credit) the ledger must hold for this visit."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    if s.state not in COMMITTED:
        return out
    out[("settle", FUND)] = (s.fund_fen, 0)
    out[("settle", ACCOUNTS)] = (s.account_fen, 0)
    out[("settle", RECEIVABLE)] = (0, s.fund_fen + s.account_fen)
    paid = s.state == "settled" or (s.state == "reversed" and gateway_status == "refunded")
    if paid and s.cash_fen:
        out[("cash", CLEARING)] = (s.cash_fen, 0)
        out[("cash", RECEIVABLE)] = (0, s.cash_fen)
    if s.state in RETURNED:
        out[("reverse", RECEIVABLE)] = (s.fund_fen + s.account_fen, 0)
        out[("reverse", FUND)] = (0, s.fund_fen)
        out[("reverse", ACCOUNTS)] = (0, s.account_fen)
        if paid and s.cash_fen:
            out[("refund", RECEIVABLE)] = (s.cash_fen, 0)
            out[("refund", CLEARING)] = (0, s.cash_fen)
    return {k: v for k, v in out.items() if v != (0, 0)}


def gateway_difference(s: Any, pay: dict[str, Any] | None) -> str | None:
    status = pay["status"] if pay else None
    if pay and pay["amount_fen"] != s.cash_fen:
        return f"gateway amount {pay['amount_fen']} != cash part {s.cash_fen}"
    if s.state == "settled" and s.cash_fen and status != "success":
        return f"settled here, gateway says {status}"
    if s.state == "reversed" and status == "success":
        return "reversed here, gateway still holds the payment (refund missing)"
    if s.state in ("paying", "awaiting_confirmation", "unresolved") and status in (
            "success", "failed"):
        return f"unconfirmed here, gateway says {status}"
    if s.state == "payment_failed" and status not in ("failed", None):
        return f"failed here, gateway says {status}"
    if s.state in ("uploaded", "presettled", "cancelled") and pay:
        return f"no insurance part committed, gateway says {status}"
    return None


async def _statements(st: Settlements, *days: date) -> list[dict[str, dict[str, Any]]]:
    """Each day's gateway statement, by order ID (none without a gateway)."""
    if st.payment is None:
        return [{} for _ in days]
    return [{p["order_id"]: p for p in await st.payment.statement(d.isoformat())}
            for d in days]


def unknown_payments(st: Settlements, day: date, orders: set[str]
                     ) -> dict[str, date | None]:
    """Of the day's gateway orders without a visit of the day, those that are not the
    previous day's visits paid after midnight: order ID -> the day of its visit, if any."""
    made = st.days_of(orders)
    return {o: made.get(o) for o in sorted(orders) if made.get(o) != day - timedelta(days=1)}


async def reconcile_day(st: Settlements, day: date) -> dict[str, Any]:
    rows = st.created_on(day)
    ids = [r.settlement_id for r in rows]
    of_day, of_next_day = await _statements(st, day, day + timedelta(days=1))
    paid = {o: of_next_day[o] for o in of_next_day.keys() & set(ids)} | of_day
    with st.engine.connect() as conn:
        entries = conn.execute(select(ledger).where(ledger.c.settlement_id.in_(ids))).all() \
            if ids else []
        records = {r.id for r in conn.execute(select(usage_records.c.id).where(
            usage_records.c.id.in_([r.usage_record_id for r in rows if r.usage_record_id])
        )).all()} if rows else set()
    postings: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0]))
    for e in entries:
        acc = postings[e.settlement_id][(e.posting, e.account)]
        acc[0] += e.debit_fen
        acc[1] += e.credit_fen
    differences: list[dict[str, str]] = []

    def differ(sid: str, kind: str, detail: str) -> None:
        differences.append({"settlement_id": sid, "kind": kind, "detail": detail})

    by_state: dict[str, int] = defaultdict(int)
    by_institution: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    for s in rows:
        by_state[s.state] += 1
        by_institution[s.institution_code][s.state] += 1
        got = {k: tuple(v) for k, v in postings.get(s.settlement_id, {}).items()}
        for posting in {p for p, _ in got}:
            debit = sum(v[0] for (p, _), v in got.items() if p == posting)
            credit = sum(v[1] for (p, _), v in got.items() if p == posting)
            if debit != credit:
                differ(s.settlement_id, "LEDGER_UNBALANCED", f"{posting}: {debit} != {credit}")
        want = expected_postings(s, (paid.get(s.settlement_id) or {}).get("status"))
        if got != want:
            differ(s.settlement_id, "LEDGER_MISMATCH", f"ledger {sorted(got.items())} != "
                   f"expected {sorted(want.items())}")
        note = gateway_difference(s, paid.get(s.settlement_id))
        if note:
            differ(s.settlement_id, "GATEWAY_MISMATCH", note)
        if s.state in COMMITTED and s.usage_record_id not in records:
            differ(s.settlement_id, "USAGE_RECORD_MISSING", "no e-SSC usage record")
        if s.state == "settled":
            for part in ("fund_fen", "account_fen", "cash_fen"):
                totals[part] += getattr(s, part)
    vouchers: dict[str, list[str]] = defaultdict(list)
    for s in rows:
        if s.ec_token and s.state in COMMITTED:
            vouchers[s.ec_token].append(s.settlement_id)
    for token, sids in sorted(vouchers.items()):
        if len(sids) > 1:
            for sid in sids:
                differ(sid, "VOUCHER_PAID_TWICE", f"voucher {token[:6]}… paid {len(sids)} "
                       f"visits: {', '.join(sids)}")
    for order_id, made in unknown_payments(st, day, set(of_day) - set(ids)).items():
        differ(order_id, "UNKNOWN_PAYMENT", f"gateway payment {of_day[order_id]['status']} "
               + ("without a settlement" if made is None
                  else f"of a settlement of {made.isoformat()}, not of this day or the one "
                  "before"))
    with st.engine.connect() as conn:
        bound = set(conn.execute(select(bindings.c.ssc_card_no).where(
            bindings.c.state == "bound",
            bindings.c.ssc_card_no.in_({r.ssc_card_no for r in rows}))).scalars()) \
            if rows else set()
    shared = [{"settlement_id": s.settlement_id, "usage_record_id": s.usage_record_id}
              for s in rows if s.state in COMMITTED and s.usage_record_id
              and s.ssc_card_no in bound]
    return {"date": day.isoformat(), "settlements": len(rows), "by_state": dict(by_state),
            # what the EHC side must have received of these visits (bound cards)
            "shared_usage_records": shared,
            "by_institution": {k: dict(v) for k, v in by_institution.items()},
            "settled_totals_fen": dict(totals),
            "open": [s.settlement_id for s in rows if s.state in ("paying",
                                                                   "awaiting_confirmation")],
            # the gateway never answered through every confirmation: an operator's
            "unresolved": [s.settlement_id for s in rows if s.state == "unresolved"],
            "differences": differences, "clean": not differences}
