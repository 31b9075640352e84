"""The outpatient settlement chain on the e-SSC side: fee upload, pre-settle, settle,
confirm, reverse (撤销, with refund of a paid cash part). It fails closed: the insurance
part is committed before the cash part is asked of the payment gateway; a cash part whose
outcome is unknown stops at ``awaiting_confirmation`` and only the gateway's own answer
(a query, or its notification followed by a query) makes the visit ``settled``.

Every change runs in one transaction with optimistic checks on the accumulators, the
personal account and the settlement's state, so two requests racing on the same visit
or the same person cannot both commit; the double-entry ledger is written in the same
transactions, so no money moves without its entries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..common.cards.audit import append
from ..common.cst import CST, cst_date, cst_day, cst_day_span, utc_now
from ..common.errors import Conflict, Gone, Invalid, NotFound, ServiceError, Unavailable
from ..common.money import check_visit
from ..common.peer import PeerUnavailable
from .cards import NORMAL, STATE_ERRORS
from .peers import PaymentClient
from .policy import FeeItem, PolicyBook, Split, YearToDate, split
from .tables import (
    accumulators,
    ec_tokens,
    insured,
    ledger,
    message_sequences,
    settlements,
    usage_records,
)

OPEN = ("paying", "awaiting_confirmation", "unresolved")
REFUSED = (400, 403, 422)  # the gateway's answers that mean "this payment will not be made"
CHANNELS = ("WECHAT", "ALIPAY", "UNIONPAY")
FUND, ACCOUNTS, RECEIVABLE, CLEARING = ("fund", "personal_accounts", "hospital_receivables",
                                        "payment_clearing")


class StaleRow(Exception):
    """An optimistic check failed: someone else changed the row; run again."""



@dataclass
class Settlements:
    engine: Engine
    book: PolicyBook
    payment: PaymentClient | None
    payment_timeout_s: float
    # the sweep's confirmations of an unknown cash part back off from first_retry_s,
    # doubling up to an hour, and stop after max_confirmations (the visit is 'unresolved')
    first_retry_s: float = 5.0
    max_confirmations: int = 12
    chain_key: bytes = field(default=b"", repr=False)  # the audit chains' (seals.py)

    # ------------------------------------------------------------------ views
    def view(self, row: Any) -> dict[str, Any]:
        return {"settlement_id": row.settlement_id, "state": row.state,
                "institution_code": row.institution_code, "ssc_card_no": row.ssc_card_no,
                "total_fen": row.total_fen, "fund_fen": row.fund_fen,
                "account_fen": row.account_fen, "cash_fen": row.cash_fen,
                "deductible_fen": row.deductible_fen, "channel": row.channel,
                "policy": row.policy, "usage_record_id": row.usage_record_id}

    def get(self, sid: str, institution_code: str | None = None) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(select(settlements)
                               .where(settlements.c.settlement_id == sid)).first()
        if row is None or (institution_code and row.institution_code != institution_code):
            raise NotFound("SETTLEMENT_NOT_FOUND", "no such settlement here")
        return row

    # ------------------------------------------------------------------ upload
    def upload(self, institution_code: str, level: int, ec_token: str,
               items: list[FeeItem], channel: str) -> Any:
        if channel not in CHANNELS:
            raise Invalid("CHANNEL_UNKNOWN", f"pay_channel is one of {CHANNELS}")
        total = check_visit(i.amount_fen for i in items)
        now = utc_now()
        with self.engine.begin() as conn:
            tok = conn.execute(select(ec_tokens).where(ec_tokens.c.token == ec_token)).first()
            if tok is None or tok.institution_code != institution_code:
                raise NotFound("EC_TOKEN_NOT_FOUND", "no such voucher token here")
            if tok.expires_at < now:
                raise Gone("EC_TOKEN_EXPIRED", "the voucher token has expired")
            sid = self._message_id(conn, institution_code)
            # one voucher, one settlement: claimed by a conditional update, so that of
            # two uploads at once exactly one wins (the other rolls back)
            claimed = conn.execute(update(ec_tokens).where(
                ec_tokens.c.token == ec_token, ec_tokens.c.settlement_id.is_(None))
                .values(settlement_id=sid)).rowcount
            if not claimed:
                raise Conflict("EC_TOKEN_USED", "this voucher already opened a settlement "
                               "(scan the card again for a new visit)")
            conn.execute(insert(settlements).values(
                settlement_id=sid, institution_code=institution_code, ec_token=ec_token,
                ssc_card_no=tok.ssc_card_no, level=level, channel=channel,
                items=orjson.dumps([i.__dict__ for i in items]).decode(), state="uploaded",
                total_fen=total, created_at=now, updated_at=now))
            return conn.execute(select(settlements)
                                .where(settlements.c.settlement_id == sid)).one()

    def _message_id(self, conn, institution_code: str) -> str:
        """Institution code (12) + yyyyMMddHHmmss (14, CST) + sequence (4)."""
        prefix = institution_code + datetime.now(CST).strftime("%Y%m%d%H%M%S")
        t = message_sequences
        done = conn.execute(update(t).where(t.c.prefix == prefix, t.c.last < 9999)
                            .values(last=t.c.last + 1)).rowcount
        if not done:
            try:
                with conn.begin_nested():
                    conn.execute(insert(t).values(prefix=prefix, last=1))
            except IntegrityError as exc:
                raise Unavailable("MESSAGE_IDS_EXHAUSTED", "too many settlements this "
                               "second; retry", {"Retry-After": "1"}) from exc
        seq = conn.execute(select(t.c.last).where(t.c.prefix == prefix)).scalar_one()
        return f"{prefix}{seq:04d}"

    # ------------------------------------------------------------------ split
    def _split(self, conn, row: Any) -> tuple[Split, Any, Any, str]:
        person = conn.execute(select(insured)
                              .where(insured.c.ssc_card_no == row.ssc_card_no)).one()
        if person.card_state != NORMAL:
            kind, code, message = STATE_ERRORS[person.card_state]
            raise kind(code, message)
        today = datetime.now(CST).date()
        acc = self._accumulator(conn, row.ssc_card_no, today.year)
        policy = self.book.find(person.region, person.insurance_type, today)
        items = [FeeItem(**i) for i in orjson.loads(row.items)]
        check_visit(i.amount_fen for i in items)  # a row an earlier version may have taken
        result = split(items, policy, row.level,
                       YearToDate(acc.deductible_used_fen, acc.fund_used_fen),
                       person.account_balance_fen)
        label = f"{policy.region}/{policy.insurance_type}/{policy.effective_from}"
        return result, person, acc, label

    def _accumulator(self, conn, card: str, year: int) -> Any:
        t = accumulators
        row = conn.execute(select(t).where(t.c.ssc_card_no == card, t.c.year == year)).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(t).values(ssc_card_no=card, year=year,
                                                  deductible_used_fen=0, fund_used_fen=0))
            except IntegrityError:
                pass  # made by a concurrent settlement
            row = conn.execute(select(t).where(t.c.ssc_card_no == card,
                                               t.c.year == year)).one()
        return row

    def presettle(self, sid: str, institution_code: str) -> dict[str, Any]:
        """The split as it would be now; nothing is committed but the state."""
        with self.engine.begin() as conn:
            row = self._locked(conn, sid, institution_code)
            if row.state not in ("uploaded", "presettled"):
                raise _state_conflict(row.state, "pre-settle")
            result, _, _, label = self._split(conn, row)
            conn.execute(update(settlements).where(settlements.c.settlement_id == sid)
                         .values(state="presettled", updated_at=utc_now()))
        return {**self.view(self.get(sid)), **result.as_dict(), "policy": label}

    def _locked(self, conn, sid: str, institution_code: str) -> Any:
        q = select(settlements).where(settlements.c.settlement_id == sid)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None or row.institution_code != institution_code:
            raise NotFound("SETTLEMENT_NOT_FOUND", "no such settlement here")
        return row

    # ------------------------------------------------------------------ settle
    async def settle(self, sid: str, institution_code: str) -> dict[str, Any]:
        row = await self._retrying(self._commit_insurance, sid, institution_code)
        if row.state == "paying":
            await self._pay(row)
        return self.view(self.get(sid))

    async def _retrying(self, fn, *args):
        for attempt in range(8):
            try:
                return fn(*args)
            except StaleRow:
                await asyncio.sleep(0.005 * (attempt + 1))
        raise Conflict("SETTLEMENT_BUSY", "the person's account is changing; retry")

    def _commit_insurance(self, sid: str, institution_code: str) -> Any:
        now = utc_now()
        with self.engine.begin() as conn:
            row = self._locked(conn, sid, institution_code)
            if row.state not in ("uploaded", "presettled"):
                raise _state_conflict(row.state, "settle")
            result, person, acc, label = self._split(conn, row)
            self._move(conn, person, acc, result, +1)
            state = "paying" if result.cash_fen else "settled"
            rec = append(conn, usage_records, "usage", [{
                "ssc_card_no": row.ssc_card_no, "institution_code": institution_code,
                "terminal_id": institution_code + "0000", "terminal_type": 99,
                "step": 10105, "code_kind": "settle", "verified_at": now}],
                institution_code, cst_day(), self.chain_key)[0]
            moved = conn.execute(update(settlements).where(
                settlements.c.settlement_id == sid, settlements.c.state == row.state).values(
                state=state, fund_fen=result.fund_fen, account_fen=result.account_fen,
                cash_fen=result.cash_fen, deductible_fen=result.deductible_fen,
                policy=label, usage_record_id=rec, updated_at=now)).rowcount
            if moved != 1:
                raise StaleRow
            self._post(conn, sid, "settle", [(FUND, result.fund_fen, 0),
                                        (ACCOUNTS, result.account_fen, 0),
                                        (RECEIVABLE, 0, result.fund_fen + result.account_fen)])
            return conn.execute(select(settlements)
                                .where(settlements.c.settlement_id == sid)).one()

    def _move(self, conn, person: Any, acc: Any, result: Split, sign: int) -> None:
        """Apply (+1) or undo (-1) a split on the year's accumulators and the account,
        each only if nobody changed them since we read them."""
        a = accumulators
        done = conn.execute(update(a).where(
            a.c.ssc_card_no == acc.ssc_card_no, a.c.year == acc.year,
            a.c.deductible_used_fen == acc.deductible_used_fen,
            a.c.fund_used_fen == acc.fund_used_fen).values(
            deductible_used_fen=acc.deductible_used_fen + sign * result.deductible_fen,
            fund_used_fen=acc.fund_used_fen + sign * result.fund_fen)).rowcount
        moved = conn.execute(update(insured).where(
            insured.c.ssc_card_no == person.ssc_card_no,
            insured.c.account_balance_fen == person.account_balance_fen).values(
            account_balance_fen=person.account_balance_fen - sign * result.account_fen,
            updated_at=utc_now())).rowcount
        if done != 1 or moved != 1:
            raise StaleRow

    # ------------------------------------------------------------------ the cash part
    async def _pay(self, row: Any) -> None:
        if self.payment is None:
            raise Unavailable("PAYMENT_NOT_CONFIGURED", "no payment gateway configured")
        try:
            answer = await asyncio.wait_for(self.payment.pay(
                row.settlement_id, row.institution_code, row.channel, row.cash_fen,
                self.payment_timeout_s), self.payment_timeout_s)
            status = answer["status"]
        except (TimeoutError, PeerUnavailable):
            status = "pending"  # fail closed: not known to be paid
        except ServiceError as exc:  # refused outright: no payment; otherwise unknown
            status = "failed" if exc.status in REFUSED else "pending"
        await self.apply_payment(row.settlement_id, status)

    async def apply_payment(self, sid: str, status: str) -> None:
        """The gateway's word on the cash part. Only ``success`` settles; ``failed``
        fails and returns the insurance part (the person's year and account restored in
        the same transaction); anything else leaves the visit awaiting confirmation."""
        target = {"success": "settled", "failed": "payment_failed",
                  "refunded": "settled"}.get(status, "awaiting_confirmation")
        if target == "payment_failed":
            await self._retrying(self._undo_insurance, sid, OPEN, target)
            return
        with self.engine.begin() as conn:
            row = conn.execute(select(settlements)
                               .where(settlements.c.settlement_id == sid)).one()
            if row.state not in OPEN or row.state == target:
                return
            moved = conn.execute(update(settlements).where(
                settlements.c.settlement_id == sid, settlements.c.state == row.state)
                .values(state=target, updated_at=utc_now())).rowcount
            if moved and target == "settled":
                self._post(conn, sid, "cash", [(CLEARING, row.cash_fen, 0),
                                          (RECEIVABLE, 0, row.cash_fen)])

    async def confirm(self, sid: str, institution_code: str | None) -> dict[str, Any]:
        """Ask the gateway what became of the cash part (after a timeout, an unknown
        answer, a notification, or a crash before the payment was even asked)."""
        row = self.get(sid, institution_code)
        if row.state not in OPEN:
            return self.view(row)
        if self.payment is None:
            raise Unavailable("PAYMENT_NOT_CONFIGURED", "no payment gateway configured")
        try:
            status = (await self.payment.query(sid))["status"]
        except ServiceError as exc:
            if exc.code != "PAYMENT_NOT_FOUND":
                raise
            await self._pay(row)  # never asked (a crash): ask now, the order ID is the key
            return self.view(self.get(sid))
        await self.apply_payment(sid, status)
        return self.view(self.get(sid))

    # ------------------------------------------------------------------ reverse
    async def reverse(self, sid: str, institution_code: str) -> dict[str, Any]:
        """撤销: undo a visit. A paid cash part is refunded first; an unconfirmed one must be
        confirmed first (fail closed)."""
        row = self.get(sid, institution_code)
        if row.state in ("uploaded", "presettled"):
            self._set_state(sid, row.state, "cancelled")
        elif row.state in OPEN:
            raise Conflict("PAYMENT_UNCONFIRMED", "the cash part's outcome is not "
                           "known yet: confirm it first")
        elif row.state == "settled":
            if row.cash_fen:
                if self.payment is None:
                    raise Unavailable("PAYMENT_NOT_CONFIGURED", "no payment gateway")
                await self.payment.refund(sid)
            await self._retrying(self._undo_insurance, sid, ("settled",), "reversed")
        elif row.state not in ("reversed", "cancelled", "payment_failed"):
            raise _state_conflict(row.state, "reverse")
        return self.view(self.get(sid))

    def _undo_insurance(self, sid: str, from_states: tuple[str, ...], to_state: str) -> None:
        """Return a committed insurance part (a reversal, or a cash part that failed)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(settlements)
                               .where(settlements.c.settlement_id == sid)).one()
            if row.state not in from_states:
                return  # moved on meanwhile (a retry, a concurrent confirmation)
            from_state = row.state
            person = conn.execute(select(insured)
                                  .where(insured.c.ssc_card_no == row.ssc_card_no)).one()
            year = row.updated_at.replace(tzinfo=UTC).astimezone(CST).year  # when settled
            acc = self._accumulator(conn, row.ssc_card_no, year)
            undo = Split(row.total_fen, row.fund_fen, row.account_fen, row.cash_fen, 0,
                         row.deductible_fen, 0)
            self._move(conn, person, acc, undo, -1)
            moved = conn.execute(update(settlements).where(
                settlements.c.settlement_id == sid, settlements.c.state == from_state)
                .values(state=to_state, updated_at=utc_now())).rowcount
            if moved != 1:
                raise StaleRow
            self._post(conn, sid, "reverse", [(RECEIVABLE, row.fund_fen + row.account_fen, 0),
                                         (FUND, 0, row.fund_fen),
                                         (ACCOUNTS, 0, row.account_fen)])
            if from_state == "settled" and row.cash_fen:
                self._post(conn, sid, "refund", [(RECEIVABLE, row.cash_fen, 0),
                                            (CLEARING, 0, row.cash_fen)])

    def _post(self, conn, sid: str, posting: str, lines: list[tuple[str, int, int]]) -> None:
        """One balanced posting (lines of zero are left out)."""
        if sum(d for _, d, _ in lines) != sum(c for _, _, c in lines):
            raise AssertionError(f"unbalanced posting {posting} of {sid}")
        now = utc_now()
        rows = [{"settlement_id": sid, "posting": posting, "account": a, "debit_fen": d,
                 "credit_fen": c, "at": now} for a, d, c in lines if d or c]
        if rows:  # chained per institution (the ID's first 12 characters) per day
            append(conn, ledger, "ledger", rows, sid[:12], cst_day(), self.chain_key)

    def _set_state(self, sid: str, old: str, new: str) -> None:
        with self.engine.begin() as conn:
            moved = conn.execute(update(settlements).where(
                settlements.c.settlement_id == sid, settlements.c.state == old)
                .values(state=new, updated_at=utc_now())).rowcount
        if moved != 1:
            raise Conflict("SETTLEMENT_STATE_CONFLICT", "the settlement changed; retry")

    def of_card(self, ssc_card_no: str, limit: int) -> Sequence[Any]:
        with self.engine.connect() as conn:
            return conn.execute(select(settlements)
                                .where(settlements.c.ssc_card_no == ssc_card_no)
                                .order_by(settlements.c.created_at.desc()).limit(limit)).all()

    def open_since(self, seconds: float) -> list[str]:
        """Visits whose cash part has been unconfirmed for at least ``seconds`` and whose
        next confirmation is due (never the unresolved ones: those are an operator's)."""
        now = utc_now()
        s = settlements.c
        with self.engine.connect() as conn:
            return list(conn.execute(select(s.settlement_id).where(
                s.state.in_(("paying", "awaiting_confirmation")),
                s.updated_at <= now - timedelta(seconds=seconds),
                (s.next_confirm_at.is_(None)) | (s.next_confirm_at <= now))).scalars())

    async def confirm_open(self, seconds: float) -> int:
        """Confirm every visit left open (a lost notification, a crash): how many were
        asked. One still unknown waits twice as long before the next question; after
        ``max_confirmations`` it is 'unresolved' and listed for an operator."""
        ids = await asyncio.to_thread(self.open_since, seconds)  # off the event loop
        for sid in ids:
            with contextlib.suppress(ServiceError):  # silent or refusing: still unknown
                await self.confirm(sid, None)
            await asyncio.to_thread(self._count_confirmation, sid)
        return len(ids)

    def _count_confirmation(self, sid: str) -> None:
        s = settlements.c
        with self.engine.begin() as conn:
            row = conn.execute(select(settlements).where(s.settlement_id == sid)).one()
            if row.state not in ("paying", "awaiting_confirmation"):
                return
            n = row.confirm_attempts + 1
            wait = min(self.first_retry_s * 2 ** (n - 1), 3600.0)
            values: dict[str, Any] = {"confirm_attempts": n,
                                      "next_confirm_at": utc_now() + timedelta(seconds=wait)}
            if n >= self.max_confirmations:
                values.update(state="unresolved", updated_at=utc_now())
            conn.execute(update(settlements).where(
                s.settlement_id == sid, s.state == row.state).values(**values))

    def created_on(self, day: date) -> Sequence[Any]:
        """The settlements made on a China Standard Time day."""
        start, end = cst_day_span(day)
        with self.engine.connect() as conn:
            return conn.execute(select(settlements).where(
                settlements.c.created_at >= start, settlements.c.created_at < end)).all()

    def days_of(self, settlement_ids: Collection[str]) -> dict[str, date]:
        """The China Standard Time day each of these settlements was made (the unknown
        are absent)."""
        if not settlement_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(settlements.c.settlement_id, settlements.c.created_at)
                                .where(settlements.c.settlement_id.in_(settlement_ids))).all()
        return {sid: cst_date(at) for sid, at in rows}


def _state_conflict(state: str, action: str) -> Conflict:
    return Conflict("SETTLEMENT_STATE_CONFLICT", f"cannot {action} a settlement "
                    f"that is {state}")
