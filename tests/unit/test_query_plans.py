"""Every hot query reads along an index, on SQLite (EXPLAIN QUERY PLAN) and PostgreSQL
(EXPLAIN with sequential scans priced out): the verification's statements, the card
systems' shared-record pulls, and the data layer's keyset pages (no scan, no sort)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import and_, column, delete, insert, select, table

from services.app import build_app, close_app
from services.common.shared_store import (
    NONCES,
    PACES,
    SlicedSweep,
    Swept,
    run_on,
    sweep_statements,
)
from services.healthcard import verify
from services.healthcard.tables import EXPORTS as EHC_EXPORTS
from services.healthcard.tables import bindings, usage_records
from services.hospital.tables import EXPORTS as HOSPITAL_EXPORTS
from services.socialcard import cards as socialcard_cards
from services.socialcard.tables import EXPORTS as ESSC_EXPORTS
from tests.stack import PG_ENV, drop_schemas, make_test_settings

HOT = ("_SELECT_CARD", "_SELECT_BINDING", "PACED_TAT",  # the verification's reads, and
       "_SELECT_HELD")  # the code refresh's (a nonce is claimed by its key)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def systems(request, tmp_path_factory) -> Iterator[dict]:
    if request.param == "postgres" and not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL plans need {PG_ENV}")
    settings = make_test_settings(tmp_path_factory.mktemp("plans"), request.param)
    app = build_app(settings)
    yield app.state.systems
    close_app(app)
    drop_schemas(settings)


def plan(engine, sql: str, params) -> str:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for kind in ("seqscan", "bitmapscan", "sort"):  # priced out: only a missing
                conn.exec_driver_sql(f"SET LOCAL enable_{kind} = off")  # index leaves them
            rows = conn.exec_driver_sql("EXPLAIN " + sql, params).fetchall()
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return "\n".join(str(r[-1]) for r in rows)


def compiled(engine, statement) -> tuple[str, object]:
    c = statement.compile(dialect=engine.dialect)
    params = c.construct_params()
    if engine.dialect.name == "postgresql":
        return str(c), params
    return str(c), tuple(params[k] for k in c.positiontup)


def assert_indexed(text: str, ordered: bool = False) -> None:
    if "Seq Scan" in text or re.search(r"^SCAN (cards|bindings|settlements|usage_records|"
                                       r"shared_events|ledger|shared_usage|insured|"
                                       r"card_apps|shared_nonces|code_uses)\b", text, re.M):
        raise AssertionError(f"a table is scanned:\n{text}")
    if ordered and ("TEMP B-TREE FOR ORDER BY" in text or re.search(r"\bSort\b", text)):
        raise AssertionError(f"the page is sorted, not read in index order:\n{text}")


@pytest.mark.parametrize("name", HOT)
def test_the_verification_reads_by_index(systems, name: str) -> None:
    engine = systems["healthcard"].engine
    sql = getattr(verify, name)
    values = {"_SELECT_CARD": ("A" * 64,), "_SELECT_BINDING": ("A" * 64,),
              "PACED_TAT": ("pace:t",), "_SELECT_HELD": ("app", "A" * 64)}[name]
    if engine.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    assert_indexed(plan(engine, sql, values))


@pytest.mark.parametrize(("system", "swept"), [
    *(("healthcard", t) for t in verify.SWEPT),
    *(("socialcard", t) for t in socialcard_cards.SWEPT)],
    ids=lambda v: v if isinstance(v, str) else v.table)
def test_the_sweeps_read_by_index(systems, system: str, swept) -> None:
    """The hot path's sweeps: the login throttles' hits by their expiry's index; on
    SQLite the nonces and the codes' use counts, both card systems' (no index on their
    expiry: a claim would write it), a slice along their key, in key order. The paced
    buckets, a row a caller, are read whole by design, and so is every table on
    PostgreSQL, whose sweep runs beside the writers (``sweep_statements``)."""
    engine = systems[system].engine
    postgres = engine.dialect.name == "postgresql"
    cutoff = datetime(2026, 1, 1) if swept.pg_type == "timestamp" else 0.0
    for sql in sweep_statements(swept, postgres):
        n = sql.count("%s" if postgres else "?")
        values = ((swept.first,) * (n - 1) + (cutoff,)) if "expires_at" in sql \
            else (swept.first,)
        text = plan(engine, sql, values)
        if swept.table == PACES or (postgres and swept.key):
            continue
        assert_indexed(text, ordered=True)


def test_a_sweep_takes_a_slice_of_keys_a_transaction(systems) -> None:
    """On SQLite a keyed table's sweep reads ``keys`` keys a call and drops the expired
    among them; a slice is one caller's (threads sweep alike: two must not take the
    same); the pass ends at the last key, and the next begins a period later. On
    PostgreSQL a pass is one call, the table whole."""
    engine = systems["healthcard"].engine
    now = time.time()
    tokens = [f"sweep-test:{i:02d}" for i in range(25)]
    expired = set(tokens[::2])
    nonces = table(NONCES, column("token"), column("expires_at"))
    with engine.begin() as conn:
        conn.execute(delete(nonces))
        conn.execute(insert(nonces), [{"token": t, "expires_at": now - 1 if t in expired
                                       else now + 600} for t in tokens])
    postgres = engine.dialect.name == "postgresql"
    sweep = SlicedSweep([Swept(NONCES, "token")], postgres=postgres, keys=10)

    def one_call(at: float, held: list | None = None) -> set[str]:
        with engine.begin() as conn:
            run_on(conn, sweep.steps(at, {NONCES: now}) if held is None else held)
            return set(conn.execute(select(nonces.c.token)).scalars())
    assert sweep.due(now)
    if postgres:
        assert one_call(now) == set(tokens) - expired and not sweep.due(now)
        return
    held = sweep.steps(now, {NONCES: now})  # a caller's slice: no other caller's meanwhile
    assert len(held) == 1 and sweep.steps(now, {NONCES: now}) == []
    assert one_call(now, held) == set(tokens) - (expired & set(tokens[:10]))  # the first
    assert sweep.due(now) and one_call(now) == set(tokens) - (expired & set(tokens[:20]))
    kept = one_call(now)  # the last slice: the keys after the second
    assert kept == set(tokens) - expired and not sweep.due(now)
    assert sweep.steps(now + 29, {NONCES: now}) == [] and sweep.due(now + 30)


def test_the_postgres_scan_statements_read_by_index(systems) -> None:
    """PostgreSQL's scan and refresh are one statement each (checks and guarded writes,
    the scan's audit head made if missing and locked), plus the usage record with its
    head, and a lone scan all of that in one: every table in them is reached by an
    index. (SQLite runs the statements above one by one.)"""
    engine = systems["healthcard"].engine
    if engine.dialect.name != "postgresql":
        assert not verify.HotStore(engine).postgres  # SQLite has no such statements
        return
    admission = verify._admission_params(None, 0.0) | {
        "token": "n", "bucket": "rate:t", "pace": "pace:rate:t", "interval": 0.2,
        "window": 2.0, "rate_limit": 10, "wall": 1.0, "token_expires": 2.0}
    scan = admission | {"card_id": "A" * 64, "fused": True, "digest": b"d" * 16,
                        "code_expires": datetime(2026, 1, 1), "usable": [1, 2],
                        "temporary": False, "use_limit": 1, "institution": "I", "day": "D",
                        "genesis": "g"}
    record = (1, "h", "I", "D", "A" * 64, "e", "I", "T", "330100", 1, 10101, "dynamic",
              "20260101000000", datetime(2026, 1, 1), "r", "D", 1, "h")
    alone = scan | dict(zip(verify._RECORD_VALUES, record[4:16], strict=True)) | {
        "empi": "e", "seen_seq": 0, "seen_hash": "g", "seq": 1, "hash": "h"}
    for sql, params in ((verify._PG_SCAN, scan),
                        (verify._PG_SCAN_ALONE, alone),
                        (verify._PG_REFRESH, admission | {"app_key": "a", "card_id": "A"}),
                        (verify._PG_RECORD, record)):
        try:
            assert_indexed(plan(engine, sql, params))
        except AssertionError as exc:
            raise AssertionError(f"{sql[:60]}...: {exc}") from None


def test_the_fused_hop_reads_by_index(systems) -> None:
    """The e-SSC side of a fused verification: the card's binding and the card."""
    engine = systems["socialcard"].engine
    sql = systems["socialcard"].cards.hot.sql(socialcard_cards._BOUND_CARD)
    text = plan(engine, sql, ("3301" + "0" * 16,))
    assert_indexed(text)
    if engine.dialect.name == "sqlite":  # the tables go by their aliases here
        assert re.search(r"^SEARCH b ", text, re.M) and re.search(r"^SEARCH i ", text, re.M)
    else:  # and its one statement there, with the voucher
        assert_indexed(plan(engine, socialcard_cards._PG_BOUND_IDENTITY, {
            "ssc": "3301" + "0" * 16, "suffix": "X", "institution": "I",
            "expires": datetime(2026, 1, 1), "usable": 1}))


def test_the_peer_pull_reads_by_index(systems) -> None:
    engine = systems["healthcard"].engine
    u = usage_records
    query = (select(u, bindings.c.ssc_card_no)
             .join(bindings, and_(bindings.c.ehc_card_id == u.c.card_id,
                                  bindings.c.state == "bound"))
             .where(u.c.id > 5).order_by(u.c.id).limit(500))  # as usage.bound_records
    assert_indexed(plan(engine, *compiled(engine, query)))


@pytest.mark.parametrize("system,exports", [("healthcard", EHC_EXPORTS),
                                            ("socialcard", ESSC_EXPORTS),
                                            ("hospital", HOSPITAL_EXPORTS)])
def test_the_data_layer_pages_read_in_index_order(systems, system: str, exports) -> None:
    engine = systems[system].engine
    for name, export in exports.items():
        cursor = "|".join("2026-01-01T00:00:00" if export.table.c[k].type.python_type
                          is datetime else "1" for k in export.keys)
        page = export.query(cursor, 1000, settled=datetime(2026, 1, 2))  # as Export.page
        try:
            assert_indexed(plan(engine, *compiled(engine, page)), ordered=True)
        except AssertionError as exc:
            raise AssertionError(f"{system} export {name}: {exc}") from None
