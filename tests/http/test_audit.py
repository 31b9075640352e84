"""Audit chains (SM3, per institution per day) over real HTTP on SQLite and PostgreSQL:
intact after scans and settlements on both card systems; an edited, a deleted and an
inserted row each reported as such at the right row; intact again once repaired; and
`ehc audit verify` says the same with its exit code."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from services.common.cst import CST
from services.healthcard.tables import usage_records as ehc_usage
from services.socialcard.tables import ledger

pytestmark = pytest.mark.one_cst_day  # reports "today" of what it did

ITEMS = [{"code": "drugs", "category": "A", "amount_fen": 30_000}]


def today() -> str:
    return datetime.now(CST).date().isoformat()


@pytest.fixture(scope="module")
def activity(stack, world):
    """Scans at two institutions and a settled visit, so both systems have chains."""
    person = world.residents.pop()
    card = world.app.apply("01", person.id_number, person.name)
    essc = world.app.claim_essc("01", person.id_number, person.name)
    world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    for term in (world.term_a, world.term_b, world.term_a):
        term.verify(world.app.qrcode(card["card_id"])["qr_text"])
    token = world.term_a.verify(world.app.qrcode(card["card_id"], kind="fused")["qr_text"],
                                step=10105)["essc"]["ec_token"]
    world.term_a.settle(world.term_a.upload_fees(token, ITEMS)["settlement_id"])
    world.term_b.verify_essc(world.app.essc_qrcode(essc["ssc_card_no"])["qr_text"])
    return card


def problems(world, system: str, chain: str) -> list[tuple]:
    report = world.admin.audit(today(), system)
    return [(p["problem"], p["row"]) for p in report[chain]["problems"]]


def test_chains_hold_after_real_traffic(activity, world) -> None:
    ehc = world.admin.audit(today(), "ehc")
    essc = world.admin.audit(today(), "essc")
    assert ehc["clean"] and essc["clean"], (ehc, essc)
    assert ehc["usage"]["rows"] >= 4 and ehc["usage"]["chains"] >= 2  # two institutions
    assert essc["usage"]["rows"] >= 2 and essc["ledger"]["rows"] >= 2


def test_edited_deleted_and_inserted_rows_are_found(stack, activity, world) -> None:
    engine = stack.app.state.systems["healthcard"].engine
    with engine.connect() as conn:
        rows = conn.execute(select(ehc_usage).where(
            ehc_usage.c.institution_code == world.term_a.terminal_id[:12])
            .order_by(ehc_usage.c.chain_seq)).all()
    first, middle, last = rows[0], rows[1], rows[-1]
    # edited: a step of care changed after the fact
    with engine.begin() as conn:
        conn.execute(update(ehc_usage).where(ehc_usage.c.id == middle.id).values(step=10107))
    assert ("edited", middle.id) in problems(world, "ehc", "usage")
    with engine.begin() as conn:
        conn.execute(update(ehc_usage).where(ehc_usage.c.id == middle.id)
                     .values(step=middle.step))
    assert problems(world, "ehc", "usage") == []
    # deleted: the first record removed; at the end: the chain is shorter than its head
    for row in (first, last):
        with engine.begin() as conn:
            conn.execute(delete(ehc_usage).where(ehc_usage.c.id == row.id))
        assert [p for p, _ in problems(world, "ehc", "usage")] == ["deleted"]
        with engine.begin() as conn:
            conn.execute(ehc_usage.insert().values(**row._asdict()))
        assert problems(world, "ehc", "usage") == []
    # inserted: a forged record, with or without chain fields
    forged = {k: v for k, v in middle._asdict().items() if k != "id"}
    with engine.begin() as conn:
        new_id = conn.execute(ehc_usage.insert().values(**forged)).inserted_primary_key[0]
    assert ("inserted", new_id) in problems(world, "ehc", "usage")
    with engine.begin() as conn:
        conn.execute(update(ehc_usage).where(ehc_usage.c.id == new_id)
                     .values(chain_day=None, chain_seq=None, chain_hash=None))
    assert problems(world, "ehc", "usage") == [("inserted", new_id)]
    with engine.begin() as conn:
        conn.execute(delete(ehc_usage).where(ehc_usage.c.id == new_id))
    assert world.admin.audit(today(), "ehc")["clean"]


def test_ledger_edits_are_found(stack, activity, world) -> None:
    engine = stack.app.state.systems["socialcard"].engine
    with engine.connect() as conn:
        row = conn.execute(select(ledger).order_by(ledger.c.id)).first()
    with engine.begin() as conn:
        conn.execute(update(ledger).where(ledger.c.id == row.id)
                     .values(debit_fen=row.debit_fen + 1))
    assert ("edited", row.id) in problems(world, "essc", "ledger")
    env = {**os.environ, "EHC_ADMIN_TOKEN": stack.admin_token}
    res = subprocess.run([sys.executable, "-m", "twin.cli", "audit", "verify", "--date",
                          today(), "--url", stack.url], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1 and "edited" in res.stdout, res.stdout + res.stderr
    with engine.begin() as conn:
        conn.execute(update(ledger).where(ledger.c.id == row.id)
                     .values(debit_fen=row.debit_fen))
    res = subprocess.run([sys.executable, "-m", "twin.cli", "audit", "verify", "--date",
                          today(), "--url", stack.url], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "intact" in res.stdout, res.stdout + res.stderr


def _chain(engine, inst: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(ehc_usage).where(ehc_usage.c.institution_code == inst)
                            .order_by(ehc_usage.c.chain_seq)).all()


def _heads(engine, inst: str):
    from services.healthcard.tables import audit_heads as h

    return h, (h.c.chain == "usage", h.c.institution_code == inst,
               h.c.day == today().replace("-", ""))


def test_a_chain_recomputed_without_the_key_is_found(stack, activity, world) -> None:
    """A record moved to another card, every following hash and the head recomputed:
    with plain SM3 (the unkeyed scheme) or under a guessed key, the chain fails."""
    from services.common.cards.audit import genesis, link, row_fields

    engine = stack.app.state.systems["healthcard"].engine
    inst = world.term_a.terminal_id[:12]
    rows = _chain(engine, inst)
    victim = rows[1]
    heads, where = _heads(engine, inst)
    with engine.connect() as conn:
        head = conn.execute(select(heads).where(*where)).one()
    for guess in (b"", b"ehc-audit", bytes(32)):
        prev = genesis(inst, victim.chain_day, guess)
        with engine.begin() as conn:
            for r in rows:
                fields = row_fields(r)
                if r.id == victim.id:
                    fields["card_id"] = "F" * 64
                    conn.execute(update(ehc_usage).where(ehc_usage.c.id == r.id)
                                 .values(card_id="F" * 64))
                prev = link(prev, fields, r.chain_seq, guess)
                conn.execute(update(ehc_usage).where(ehc_usage.c.id == r.id)
                             .values(chain_hash=prev))
            conn.execute(update(heads).where(*where).values(hash=prev))
        found = problems(world, "ehc", "usage")
        assert ("edited", rows[0].id) in found and ("edited", victim.id) in found, found
    with engine.begin() as conn:  # put the chain back as it was
        for r in rows:
            conn.execute(update(ehc_usage).where(ehc_usage.c.id == r.id)
                         .values(card_id=r.card_id, chain_hash=r.chain_hash))
        conn.execute(update(heads).where(*where).values(seq=head.seq, hash=head.hash))
    assert world.admin.audit(today(), "ehc")["clean"]


def test_a_cut_tail_with_its_head_rolled_back_is_found_by_the_seals(
        stack, activity, world) -> None:
    """The newest record deleted and the head set back to the one before (a real, earlier
    head): the chain is consistent in the store, but not with the sealed head, found
    through this system's file and through the other system's copy alike."""
    engine = stack.app.state.systems["healthcard"].engine
    inst = world.term_a.terminal_id[:12]
    sealed = world.admin.seal_audit(today(), "ehc")
    assert sealed["sealed"] >= 2 and sealed["peer_held"] == sealed["sealed"], sealed
    rows = _chain(engine, inst)
    last, before = rows[-1], rows[-2]
    heads, where = _heads(engine, inst)
    with engine.begin() as conn:
        conn.execute(delete(ehc_usage).where(ehc_usage.c.id == last.id))
        conn.execute(update(heads).where(*where).values(seq=before.chain_seq,
                                                       hash=before.chain_hash))
    assert problems(world, "ehc", "usage") == [("deleted", None)]
    world.admin.seal_audit(today(), "ehc")  # sealing again never lowers a seal
    assert problems(world, "ehc", "usage") == [("deleted", None)]
    folder = stack.settings.var_dir / "audit-seals" / "ehc"
    day = today().replace("-", "")
    kept = (folder / f"{day}.json").read_bytes()
    (folder / f"{day}.json").unlink()  # the writer removes the file too: the peer holds it
    report = world.admin.audit(today(), "ehc")
    assert report["seals"]["file"] == 0 and report["seals"]["peer"] >= 2
    assert [(p["problem"], p["row"]) for p in report["usage"]["problems"]] == [
        ("deleted", None)]
    # a seal forged into the file (no system key) is itself a finding
    import orjson

    forged = orjson.loads(kept)
    forged[0] = {**forged[0], "seq": forged[0]["seq"] + 5}
    (folder / f"{day}.json").write_bytes(orjson.dumps(forged))
    report = world.admin.audit(today(), "ehc")
    assert report["seals"]["invalid"] == 1 and not report["clean"]
    (folder / f"{day}.json").write_bytes(kept)
    with engine.begin() as conn:  # restored: intact again
        conn.execute(ehc_usage.insert().values(**last._asdict()))
        conn.execute(update(heads).where(*where).values(seq=last.chain_seq,
                                                       hash=last.chain_hash))
    assert world.admin.audit(today(), "ehc")["clean"]


def test_two_servers_batches_over_the_same_chains_both_commit(stack, world) -> None:
    """Two processes' group commits, each moving the same two institutions' chains but
    taking them in opposite order, both commit (each batch locks its audit heads in one
    order: no waiting in a circle, which PostgreSQL would break by failing one batch),
    and the day's chains stay whole."""
    import asyncio
    import threading

    from services.healthcard.verify import Scan, Verifier

    hc = stack.app.state.systems["healthcard"]
    v = hc.verifier
    servers = [Verifier(hc.engine, v.keystore, v.cipher, v.settings, v.chain_key)
               for _ in range(2)]
    terms = [hc.callers.terminal(t.terminal_id) for t in (world.term_a, world.term_b)]
    cards = [world.app.apply("01", p.id_number, p.name)["card_id"]
             for p in (world.residents.pop() for _ in range(2))]

    def scan(term_index: int, card_id: str) -> Scan:
        client = (world.term_a, world.term_b)[term_index]
        body = client.verify_body(world.app.qrcode(card_id)["qr_text"])
        return servers[0].check(terms[term_index], body, "r")

    def record(server: Verifier, scans: list[Scan]) -> list:
        if server.pg is None:  # SQLite: each server's writer thread
            return server.record_batch(scans)
        return asyncio.run(server.record_batch_pg(scans))

    for _ in range(4):
        batches = [[scan(0, cards[0]), scan(1, cards[1])], [scan(1, cards[0]), scan(0, cards[1])]]
        results: list = [None, None]

        def run(i: int, batches: list = batches, results: list = results) -> None:
            results[i] = record(servers[i], batches[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(isinstance(r, tuple) for batch in results for r in batch), results
    if servers[0].pg is not None:  # PostgreSQL: the order itself, deterministically
        _heads_locked_in_one_order(hc.engine, servers[0], [scan(1, cards[0]),
                                                           scan(0, cards[1])])
    for server in servers:
        server.funnel.close()
        if server.pg is not None:
            server.pg.drop()
    assert world.admin.audit(today(), "ehc")["clean"]


def test_a_batch_holds_every_head_it_moves_from_its_first_statement(stack, world) -> None:
    """A batch with the day's first scan of one chain and a scan of a chain begun
    earlier commits both, the chains whole. On PostgreSQL it makes the missing head and
    locks the existing one in the same first statement, in the one order: a head made in
    a later round, after existing heads were locked, let two servers' batches wait in a
    circle when a head appeared between one batch's rounds (one failed with 503 after
    PostgreSQL's deadlock timeout). There another transaction holds the later head; the
    batch, waiting for it, must already hold the earlier head it made."""
    import secrets

    from services.healthcard.verify import Verifier
    from services.sdk import TerminalClient

    hc = stack.app.state.systems["healthcard"]
    v = hc.verifier
    server = Verifier(hc.engine, v.keystore, v.cipher, v.settings, v.chain_key)
    code = f"3300{secrets.randbelow(10 ** 8):08d}"  # sorts before every seeded one
    world.admin.add_hospital(code, f"Hospital {code}", "330100")
    cred = world.admin.add_shared_terminal(code, "0101", 2, False)
    new_term = TerminalClient(stack.url, cred["terminal_id"], cred["secret"],
                              city_code="330100", terminal_type=2)
    cards = [world.app.apply("01", p.id_number, p.name)["card_id"]
             for p in (world.residents.pop() for _ in range(2))]
    world.term_b.verify(world.app.qrcode(cards[1])["qr_text"])  # its head now exists

    def scan(client: TerminalClient, card_id: str):
        body = client.verify_body(world.app.qrcode(card_id)["qr_text"])
        return server.check(hc.callers.terminal(client.terminal_id), body, "r")

    batch = [scan(new_term, cards[0]), scan(world.term_b, cards[1])]
    (low, day), high = batch[0].chain, batch[1].chain
    assert low < high[0]
    try:
        if server.pg is None:  # SQLite: one writer, the batch's lock taken as it begins
            results = [server.record_batch(batch)]
        else:
            results = _while_the_later_head_is_held(hc.engine, server, batch, high,
                                                    (low, day))
        assert all(isinstance(r, tuple) for r in results[0]), results
    finally:
        server.funnel.close()
        if server.pg is not None:
            server.pg.drop()
        new_term.close()
    assert world.admin.audit(today(), "ehc")["clean"]


def _while_the_later_head_is_held(engine, server, batch: list, high: tuple,
                                  low: tuple) -> list:
    """The batch run while another transaction holds the ``high`` head: once it waits
    for it, a probe finds the ``low`` head (which the batch makes) held too."""
    import asyncio

    with _while_waiting_on_head(engine, high, lambda: asyncio.run(
            server.record_batch_pg(batch))) as (probe, results), \
            pytest.raises(Exception, match="lock timeout"):  # the earlier head is held
        probe.execute("INSERT INTO audit_heads (chain, institution_code, day, seq, "
                      "hash) VALUES ('usage', %s, %s, 0, 'x') ON CONFLICT DO NOTHING", low)
    return results


def _heads_locked_in_one_order(engine, server, scans: list) -> None:
    """Another transaction holds the lower institution's audit head; a batch that lists
    the higher one first must not take it before it waits for the lower (or the other
    transaction, reaching for the higher head next, would wait in a circle with it)."""
    import asyncio
    import threading
    import time

    from services.healthcard.verify import _chain_of

    low, high = sorted({_chain_of(s) for s in scans})
    batch = sorted(scans, key=_chain_of, reverse=True)  # the higher chain first
    read = ("SELECT seq FROM audit_heads WHERE chain = 'usage' AND institution_code = %s "
            "AND day = %s FOR UPDATE")
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute(read, low)
        results: list = []
        thread = threading.Thread(target=lambda: results.append(
            asyncio.run(server.record_batch_pg(batch))))
        thread.start()
        time.sleep(0.5)  # the batch now waits for the lower head (and holds nothing)
        cur.execute(read, high)  # with the higher one taken first: a deadlock, one fails
        conn.commit()
        thread.join(30)
        assert results and all(isinstance(r, tuple) for r in results[0]), results
    finally:
        conn.close()


@contextlib.contextmanager
def _while_waiting_on_head(engine, chain: tuple[str, str], run: Callable[[], Any]
                           ) -> Iterator[tuple[Any, list]]:
    """``run()`` on a thread while another transaction holds the usage chain's audit
    head ``chain``: the block gets, once it waits there, a probe's cursor (lock timeout
    200 ms) and the list ``run``'s result is put in when the head is let go, after it."""
    holder, probe = engine.raw_connection(), engine.raw_connection()
    results: list = []
    try:
        holder.cursor().execute(
            "SELECT seq FROM audit_heads WHERE chain = 'usage' AND institution_code = %s"
            " AND day = %s FOR UPDATE", chain)
        thread = threading.Thread(target=lambda: results.append(run()))
        thread.start()
        time.sleep(0.5)  # the batch now waits for the head
        cur = probe.cursor()
        cur.execute("SET lock_timeout = '200ms'")
        yield cur, results
        probe.rollback()
        holder.commit()
        thread.join(30)
    finally:
        holder.close()
        probe.close()


def test_a_batch_takes_a_terminals_bucket_only_under_its_head(stack, world) -> None:
    """A paced scan's terminal bucket is locked after its audit head, never before: a
    bucket is then only ever taken by the holder of its institution's head of the day,
    so two servers' batches with two terminals of one institution cannot wait on each
    other in a circle (one holding a bucket and wanting the head, the other the
    reverse). On PostgreSQL another transaction holds the head; while the batch waits
    for it, the terminal's bucket is free. The batch then commits."""
    import asyncio
    import secrets
    import time

    from services.common.signing import Admission
    from services.healthcard.verify import Verifier

    hc = stack.app.state.systems["healthcard"]
    v = hc.verifier
    server = Verifier(hc.engine, v.keystore, v.cipher, v.settings, v.chain_key)
    term = world.term_a
    card = world.app.apply("01", *(lambda p: (p.id_number, p.name))(world.residents.pop()))

    def scan():
        body = term.verify_body(world.app.qrcode(card["card_id"])["qr_text"])
        return server.check(hc.callers.terminal(term.terminal_id), body, "r", Admission(
            secrets.token_hex(16), "rate:" + term.terminal_id, time.time() + 60, 1000))

    first = scan()
    try:
        if server.pg is None:  # SQLite: one writer, nothing to wait on in a circle
            assert all(isinstance(r, tuple) for r in server.record_batch([first, scan()]))
            return
        assert isinstance(asyncio.run(server.record_batch_pg([first]))[0], tuple)
        with _while_waiting_on_head(hc.engine, first.chain, lambda: asyncio.run(
                server.record_batch_pg([scan()]))) as (cur, results):
            cur.execute("SELECT token FROM shared_paces WHERE token = %s FOR UPDATE",
                        ("pace:rate:" + term.terminal_id,))  # free: not taken yet
            assert cur.fetchone() is not None
        assert results and isinstance(results[0][0], tuple), results
    finally:
        server.funnel.close()
        if server.pg is not None:
            server.pg.drop()


def test_a_batchs_refreshes_hold_their_apps_bucket_apart_from_its_scans(stack, world
                                                                         ) -> None:
    """An app's paced bucket is one row every refresh of the app moves, on every server.
    On PostgreSQL a batch's refreshes are a transaction of their own, before its scans':
    while the batch waits for a scan's audit head another transaction holds, the app's
    bucket is free and already moved by both refreshes (in the scans' transaction it was
    held to their commit, and two servers' batches took turns on it). The refreshes are
    paced in turn as before: an app with two requests left gets two of three, one with
    three all three, and then none."""
    import asyncio
    import secrets
    import time
    import uuid

    from services.common.errors import RateLimited
    from services.common.signing import RATE_WINDOW_S, Admission
    from services.healthcard.verify import Refresh, Verifier

    hc = stack.app.state.systems["healthcard"]
    v = hc.verifier
    server = Verifier(hc.engine, v.keystore, v.cipher, v.settings, v.chain_key)
    term = world.term_a
    cards = [world.app.apply("01", p.id_number, p.name)["card_id"]
             for p in (world.residents.pop() for _ in range(2))]

    def scan():
        body = term.verify_body(world.app.qrcode(cards[0])["qr_text"])
        return server.check(hc.callers.terminal(term.terminal_id), body, "r")

    def refreshes(bucket: str, limit: int, n: int) -> list[Refresh]:
        return [Refresh(cards[1], world.app.key, False, Admission(
            secrets.token_hex(16), bucket, time.time() + 60, limit)) for _ in range(n)]

    def record(batch: list) -> list:
        if server.pg is None:  # SQLite: one writer, the bucket in its transaction
            return server.record_batch(batch)
        return asyncio.run(server.record_batch_pg(batch))

    def refused(results: list) -> list[bool]:
        return [isinstance(r, RateLimited) for r in results]

    first = scan()
    try:
        assert isinstance(record([first])[0], tuple)  # the head exists
        bucket = f"rate:test-{uuid.uuid4().hex[:8]}"
        assert refused(record(refreshes(bucket, 1000, 1))) == [False]  # the bucket exists
        batch = [*refreshes(bucket, 1000, 2), scan()]
        if server.pg is None:
            assert all(not isinstance(r, Exception) for r in record(batch))
        else:
            before = time.time()
            with _while_waiting_on_head(hc.engine, first.chain, lambda: record(batch)
                                        ) as (cur, results):
                cur.execute("SELECT expires_at FROM shared_paces WHERE token = %s "
                            "FOR UPDATE", ("pace:" + bucket,))  # free, and moved by two
                assert cur.fetchone()[0] >= before + 2 * RATE_WINDOW_S / 1000
            assert results and not any(isinstance(r, Exception) for r in results[0])
            assert isinstance(results[0][2], tuple)
        tight = f"rate:test-{uuid.uuid4().hex[:8]}"
        assert refused(record(refreshes(tight, 2, 3))) == [False, False, True]
        exact = f"rate:test-{uuid.uuid4().hex[:8]}"
        assert refused(record(refreshes(exact, 3, 3))) == [False] * 3
        assert refused(record(refreshes(exact, 3, 2))) == [True, True]  # full
    finally:
        server.close()


def test_a_batch_across_midnight_holds_one_days_heads_at_a_time(stack, world) -> None:
    """A batch with scans of two CST days (a terminal's, under today's head and
    tomorrow's) is one transaction a day, in day order: it never holds the terminal's
    bucket while it waits for tomorrow's head. On PostgreSQL another transaction holds
    tomorrow's head; while the batch waits for it, today's scan is committed and the
    bucket free (in one transaction, the batch would hold it: two servers, the other
    holding tomorrow's head and wanting the bucket, would deadlock). Both scans are then
    recorded, each on its day's chain."""
    import asyncio
    import dataclasses
    import secrets
    import time

    from services.common.signing import Admission
    from services.healthcard.verify import Verifier

    hc = stack.app.state.systems["healthcard"]
    v = hc.verifier
    server = Verifier(hc.engine, v.keystore, v.cipher, v.settings, v.chain_key)
    term = world.term_a
    card = world.app.apply("01", *(lambda p: (p.id_number, p.name))(world.residents.pop()))

    def scan(day: str | None = None):
        body = term.verify_body(world.app.qrcode(card["card_id"])["qr_text"])
        made = server.check(hc.callers.terminal(term.terminal_id), body, "r", Admission(
            secrets.token_hex(16), "rate:" + term.terminal_id, time.time() + 60, 1000))
        return made if day is None else dataclasses.replace(made, chain=(made.chain[0], day))

    today = scan()
    tomorrow_day = "99991231"  # a day of its own: its head is this test's alone
    try:
        if server.pg is None:  # SQLite: one writer, nothing to wait on in a circle
            done = server.record_batch([scan(tomorrow_day), today])
            assert all(isinstance(r, tuple) for r in done), done
            return
        assert isinstance(asyncio.run(server.record_batch_pg([scan(tomorrow_day)]))[0], tuple)
        batch = [scan(tomorrow_day), today]
        # today's transaction is done; tomorrow's waits for its head
        with _while_waiting_on_head(hc.engine, (today.chain[0], tomorrow_day), lambda: (
                asyncio.run(server.record_batch_pg(batch)))) as (cur, results):
            cur.execute("SELECT token FROM shared_paces WHERE token = %s FOR UPDATE",
                        ("pace:rate:" + term.terminal_id,))  # free: today's committed
            assert cur.fetchone() is not None
        assert results and all(isinstance(r, tuple) for r in results[0]), results
        with hc.engine.connect() as conn:
            days = conn.exec_driver_sql(
                "SELECT chain_day, count(*) FROM usage_records WHERE card_id = %s "
                "GROUP BY chain_day", (card["card_id"],)).all()
        assert dict(days) == {today.chain[1]: 1, tomorrow_day: 2}
        # tomorrow's transaction fails after today's committed: its scans get the fault,
        # today's its record
        real, calls = server._transaction_pg, []

        async def second_fails(items):
            calls.append(items)
            if len(calls) == 2:
                raise ConnectionError("the store went away")
            return await real(items)

        server._transaction_pg = second_fails  # type: ignore[method-assign]
        done = asyncio.run(server.record_batch_pg([scan(tomorrow_day), scan()]))
        assert isinstance(done[1], tuple) and isinstance(done[0], ConnectionError), done
    finally:
        server.funnel.close()
        if server.pg is not None:
            server.pg.drop()


def test_a_lone_scan_is_one_statement_written_only_as_last_seen(stack, world) -> None:
    """On PostgreSQL a scan with nothing else in flight is one statement, its own
    transaction, its chain's link made beforehand from the head and the card's EMPI this
    process last saw. It writes nothing when either moved since (another server's scan
    of the institution, an EMPI this process had wrong) and the scan takes the batch
    path, its chain's scans too for a while (two servers would keep losing the race):
    every scan recorded once, the chain whole, each record with its card's EMPI.
    Its refusals are the batch path's: a replayed request, a code used up."""
    import asyncio
    import dataclasses
    import secrets

    from services.common.errors import ServiceError
    from services.common.signing import Admission
    from services.healthcard.verify import Verifier

    hc = stack.app.state.systems["healthcard"]
    v = hc.verifier
    servers = [Verifier(hc.engine, v.keystore, v.cipher, v.settings, v.chain_key)
               for _ in range(2)]
    term = world.term_a
    person = world.residents.pop()
    card = world.app.apply("01", person.id_number, person.name)["card_id"]

    def scan(server: Verifier):
        body = term.verify_body(world.app.qrcode(card)["qr_text"])
        return server.check(hc.callers.terminal(term.terminal_id), body, "r", Admission(
            secrets.token_hex(16), "rate:" + term.terminal_id, time.time() + 60, 1000))

    if servers[0].pg is None:  # SQLite: one writer, no such statement
        assert all(isinstance(server.record_batch([scan(server)])[0], tuple)
                   for server in servers)
        return
    batches: list[str] = []
    for server in servers:
        server.sweep.next_pass = float("inf")  # no sweep beside these batches
        pg = server.pg
        assert pg is not None and server.pg_one is not None

        def counted(real=pg.transaction):
            batches.append("batch")
            return real()
        pg.transaction = counted  # type: ignore[method-assign]

    def record(server: Verifier, item) -> object:
        return asyncio.run(server.record_batch_pg([item]))[0]

    try:
        first = record(servers[0], scan(servers[0]))  # nothing seen yet: the batch path
        assert isinstance(first, tuple) and batches == ["batch"]
        again = scan(servers[0])
        assert isinstance(record(servers[0], again), tuple) and batches == ["batch"]
        replayed = record(servers[0], again)  # the same signed request: its nonce is used
        assert isinstance(replayed, ServiceError) and replayed.code == "SIGNATURE_REPLAYED"
        assert batches == ["batch"]
        assert isinstance(record(servers[1], scan(servers[1])), tuple)  # the head moves
        assert batches == ["batch"] * 2
        moved = record(servers[0], scan(servers[0]))  # not as seen: the batch path
        assert isinstance(moved, tuple) and batches == ["batch"] * 3
        after = record(servers[0], scan(servers[0]))  # and its chain's, for a while
        assert isinstance(after, tuple) and batches == ["batch"] * 4
        servers[0]._seen.quiet_s = 0.0  # (no while: the next scan tries alone again)
        servers[0]._seen._contended.clear()
        servers[0]._seen.card(card, "0" * 32)  # an EMPI it has wrong
        wrong = record(servers[0], scan(servers[0]))
        assert isinstance(wrong, tuple) and batches == ["batch"] * 5
        alone = record(servers[0], scan(servers[0]))  # as seen again: alone
        assert isinstance(alone, tuple) and batches == ["batch"] * 5
        code = scan(servers[0])  # one code, verified as often as it may be, then once more
        uses = [record(servers[0], dataclasses.replace(code, admission=Admission(
            secrets.token_hex(16), "rate:" + term.terminal_id, time.time() + 60, 1000)))
            for _ in range(servers[0].limit + 1)]
        assert all(isinstance(u, tuple) for u in uses[:-1])
        assert isinstance(uses[-1], ServiceError) and uses[-1].code == "QR_REPLAYED"
        assert batches == ["batch"] * 5
    finally:
        for server in servers:
            server.close()
    with hc.engine.connect() as conn:
        empis = conn.execute(select(ehc_usage.c.empi).where(ehc_usage.c.card_id == card)).all()
    assert len(empis) == 7 + servers[0].limit
    assert {e for (e,) in empis} == {world.app.card(card)["empi"]}
    assert world.admin.audit(today(), "ehc")["clean"]
