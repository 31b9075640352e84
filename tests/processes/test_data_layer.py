"""The data resources layer against a real stack: a co-simulated clinic day, gathered
through the export routes into the analytics store, checked by the quality rules; each
injected fault is found, no personal data reaches the store."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.common.db import EXPORT_SETTLE_S
from services.common.secrets_store import deployment_secret
from services.data.collect import SOURCES, CollectError, collect
from services.data.quality import check
from services.data.store import Store
from services.sdk import AdminClient, RunningStack, TerminalClient, start_in_thread
from tests.stack import make_test_settings
from twin.experiments.cosim import run_cosim
from twin.scenario.schema import AgeGroup, load_scenario

PLANTED = {"id_number": "33010619900101123X", "name": "植入测试者", "phone": "13900001111"}


@dataclass
class Network:
    stack: RunningStack
    token: str
    store: Path  # collected once, in full: tests copy it before changing it


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Iterator[Network]:
    tmp = tmp_path_factory.mktemp("data")
    settings = make_test_settings(tmp / "var", rate_limit_terminal_per_s=0)
    stack = start_in_thread(settings)
    try:
        run_cosim(load_scenario(Path("scenarios/small_clinic.yaml")), stack.url,
                  stack.admin_token, tmp / "cosim")
        with AdminClient(stack.url, stack.admin_token) as admin:
            _plant(admin, stack)
            _visit(stack)
            admin.pull_usage("ehc")
            admin.pull_usage("essc")
        token = deployment_secret(settings, "data_token")
        time.sleep(EXPORT_SETTLE_S)  # exports hold back rows younger than this
        collect(stack.url, token, Store(tmp / "store"))
        yield Network(stack, token, tmp / "store")
    finally:
        stack.stop()


def _plant(admin: AdminClient, stack: RunningStack) -> None:
    """A resident with known personal data, a card, and a scan of it."""
    from tests.conftest import seeded_world

    world = seeded_world(stack, residents=1)
    admin.add_residents([{"id_type": "01", **PLANTED}])
    card = world.app.apply("01", PLANTED["id_number"], PLANTED["name"])
    term: TerminalClient = world.term_a
    term.verify(world.app.qrcode(card["card_id"])["qr_text"])


def _visit(stack: RunningStack) -> None:
    """A booking checked in and one cancelled at the hospital (a drill session: its clock
    set here)."""
    from services.sdk import HospitalClient

    h = HospitalClient(stack.url, stack.admin_token)
    h.add_department("0101", "内科")
    h.add_doctor("d1", "0101", "王医生")
    sid = h.add_session("d1", "2031-01-02", "08:00", "09:00", drill=True)
    h.set_clock(sid, "07:55")
    cards = ["A" * 64, "B" * 64]
    first = h.book(sid, "08:00", cards[0])
    second = h.book(sid, "08:15", cards[1])
    h.request("POST", f"/hospital/v1/bookings/{second['booking_id']}/cancel",
              {"card_id": cards[1]})
    assert h.check_in(sid, cards[0])["kind"] == "holder" and first["state"] == "booked"
    h.close()


def copy_of(store: Path, tmp_path: Path) -> Store:
    target = tmp_path / "store"
    shutil.copytree(store, target)
    return Store(target)


def rewrite(store: Store, source: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Replace a source's rows by ``change(rows)`` (one file per day)."""
    folder = store.path / source
    files = sorted(folder.glob("day=*/*.parquet"))
    rows = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    shutil.rmtree(folder)
    new = change(rows)
    for day, part in new.groupby(new[_dated(source)].astype(str).str[:10]):
        (folder / f"day={day}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                       folder / f"day={day}" / "rewritten.parquet")


def _dated(source: str) -> str:
    return {"usage": "verified_at", "cards": "updated_at", "bindings": "updated_at",
            "shared_usage": "received_at", "settlements": "updated_at",
            "ledger": "at", "bookings": "updated_at", "checkins": "joined_at",
            "bills": "updated_at"}[
        source.split(".")[1]]


def keys(store: Store, view: str, key: str = "id") -> list:
    return store.connect().execute(f"SELECT {key} FROM {view} ORDER BY {key}").fetchall()


# ---------------------------------------------------------------- gathering
def test_every_source_is_gathered(network) -> None:
    store = Store(network.store)
    assert store.sources() == sorted(f"{s}.{n}" for s, n in SOURCES)
    con = store.connect()
    counts = {v: con.execute(f"SELECT count(*) FROM {v}").fetchone()[0]
              for v in ("ehc_usage", "essc_usage", "essc_settlements", "essc_ledger",
                        "ehc_bindings", "essc_shared_usage", "ehc_cards")}
    assert all(n > 0 for n in counts.values()), counts
    settled = con.execute("SELECT count(*) FROM essc_settlements WHERE state = 'settled'")
    assert settled.fetchone()[0] > 0


def test_an_interrupted_collection_resumes_and_keeps_each_row_once(network, tmp_path) -> None:
    store = Store(tmp_path / "resumed")
    collect(network.stack.url, network.token, store, page_size=50, max_pages=7)
    partial = len(keys(store, "ehc_usage"))
    collect(network.stack.url, network.token, store, page_size=50, max_pages=3)
    collect(network.stack.url, network.token, store, page_size=50)
    whole = Store(network.store)
    for view, key in (("ehc_usage", "id"), ("essc_usage", "id"), ("essc_ledger", "id"),
                      ("ehc_shared_usage", "id"), ("essc_shared_usage", "id"),
                      ("essc_settlements", "settlement_id, updated_at"),
                      ("ehc_cards", "card_id, updated_at")):
        assert keys(store, view, key) == keys(whole, view, key), view
    assert 0 < partial < len(keys(whole, "ehc_usage"))
    again = collect(network.stack.url, network.token, store, page_size=50)
    assert sum(c.rows for c in again) == 0  # nothing new: nothing pulled twice


def test_new_records_arrive_at_the_next_collection(network, tmp_path) -> None:
    from tests.conftest import seeded_world

    store = copy_of(network.store, tmp_path)
    world = seeded_world(network.stack, residents=2)
    person = world.residents[0]
    card = world.app.apply("01", person.id_number, person.name)
    world.term_b.verify(world.app.qrcode(card["card_id"])["qr_text"])
    early = {c.source: c.rows for c in collect(network.stack.url, network.token, store)}
    assert early["ehc.usage"] == 0  # too young yet: an open transaction could still commit
    time.sleep(EXPORT_SETTLE_S)  # an earlier key, so the export waits
    got = {c.source: c.rows for c in collect(network.stack.url, network.token, store)}
    assert got["ehc.usage"] == 1 and got["ehc.cards"] >= 1 and got["essc.usage"] == 0


def test_the_store_is_private_and_holds_no_personal_data(network) -> None:
    store = Store(network.store)
    for path in [network.store, *network.store.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    con = store.connect()
    texts = []
    for source in store.sources():
        df = con.execute(f"SELECT * FROM {source.replace('.', '_')}").df()
        assert not {"name", "id_number", "phone", "id_digest", "birth_date"} & set(df.columns)
        if source == "ehc.cards":
            assert set(df.age_group) <= {"child", "adult", "elderly"}
        texts.append(df.astype(str).to_csv())
    everything = "\n".join(texts)
    assert len(everything) > 10_000
    for value in PLANTED.values():  # the planted resident's card is there, not their data
        assert value not in everything
    raw = b"".join(p.read_bytes() for p in network.store.rglob("*.parquet"))
    for value in PLANTED.values():
        assert value.encode() not in raw


# ---------------------------------------------------------------- governance
def test_the_collected_network_is_clean(network) -> None:
    breaches, per_day = check(Store(network.store))
    assert breaches.empty, breaches.head().to_string()
    assert (per_day.score == 1).all() and per_day.rows.sum() > 1000


def _one_rule(store: Store, rule: str, key: str) -> pd.DataFrame:
    breaches, per_day = check(store)
    assert set(breaches.rule) == {rule}, breaches.to_string()
    assert key in set(breaches.key), breaches.to_string()
    assert (per_day.score < 1).any()
    return breaches


def test_a_dropped_record_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)
    ids = sorted(pd.concat([pq.read_table(f).to_pandas() for f in
                            (store.path / "essc.shared_usage").rglob("*.parquet")])
                 .query("source == 'ehc'").source_id)
    dropped = ids[len(ids) // 2]  # not the newest: the sync had passed it
    rewrite(store, "essc.shared_usage",
            lambda df: df[~((df.source == "ehc") & (df.source_id == dropped))])
    _one_rule(store, "ehc usage shared with essc", str(dropped))


def test_a_duplicate_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)
    twice: list[str] = []  # the changed row's key, whichever day's file it lands in

    def duplicate(df: pd.DataFrame) -> pd.DataFrame:
        twice.append(str(df.iloc[3].id))
        return pd.concat([df, df.iloc[[3]]])

    rewrite(store, "ehc.usage", duplicate)
    _one_rule(store, "ehc_usage: kept once", twice[0])


def test_a_late_sync_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)
    changed: list[str] = []  # its key: two hours later may be the next day's file

    def late(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        row = df.index[df.source == "essc"][0]
        changed.append(str(df.loc[row, "id"]))
        at = pd.Timestamp(df.loc[row, "at"]).tz_localize(None)
        df.loc[row, "received_at"] = (at + pd.Timedelta(hours=2)).isoformat()
        return df

    rewrite(store, "ehc.shared_usage", late)
    _one_rule(store, "essc usage shared in time", changed[0])


def test_an_orphan_settlement_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)
    settled = store.connect().execute("SELECT settlement_id FROM essc_settlements WHERE "
                                      "state = 'settled' LIMIT 1").fetchone()[0]
    rewrite(store, "essc.ledger", lambda df: df[df.settlement_id != settled])
    found = _one_rule(store, "settlements posted to the ledger", settled)
    assert set(found.detail) == {"no ledger postings"}


def test_a_posting_of_no_settlement_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)

    def orphan(df: pd.DataFrame) -> pd.DataFrame:
        extra = df.iloc[[0]].copy()
        extra["id"] = df.id.max() + 1
        extra["settlement_id"] = "330100000000" + "20260101000000" + "9999"
        return pd.concat([df, extra])

    rewrite(store, "essc.ledger", orphan)
    breaches, _ = check(store)
    assert set(breaches.rule) == {"ledger postings of a known settlement"}


def test_a_check_in_of_no_booking_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)
    rewrite(store, "hospital.bookings", lambda df: df[df.state != "checked_in"])
    breaches, _ = check(store)
    assert set(breaches.rule) == {"check-ins of a known booking"}


def test_a_bill_paid_by_no_settlement_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)
    paid = store.connect().execute("SELECT count(*) FROM hospital_bills "
                                   "WHERE paid_by = 'essc'").fetchone()[0]
    assert paid > 0  # the co-simulated day's bills, settled through the e-SSC

    def unknown(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[df.index[df.paid_by == "essc"][0], "settlement_id"] = "9" * 30
        return df

    rewrite(store, "hospital.bills", unknown)
    breaches, _ = check(store)
    assert set(breaches.rule) == {"hospital bills settled on the e-SSC side"}
    assert len(breaches) == 1 and "unknown to the e-SSC" in breaches.detail.iloc[0]


def test_an_invalid_code_is_found(network, tmp_path) -> None:
    store = copy_of(network.store, tmp_path)

    changed: list[str] = []

    def bad_step(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[df.index[0], "step"] = 99999
        changed.append(str(df.iloc[0].id))
        return df

    rewrite(store, "essc.usage", bad_step)
    found = _one_rule(store, "essc_usage: codes", changed[0])
    assert found.detail.str.contains("step 99999").all()


# ---------------------------------------------------------------- the routes and the CLI
def test_the_export_routes_admit_only_the_data_token_and_operators(network) -> None:
    url = network.stack.url
    with httpx.Client(base_url=url) as http:
        def get(path: str, token: str | None = None, **params) -> httpx.Response:
            h = {"authorization": f"Bearer {token}"} if token else {}
            return http.get(path, params=params, headers=h)

        assert get("/ehc/v1/export/usage").status_code == 401
        service = deployment_secret(network.stack.settings, "service_token")
        assert get("/essc/v1/export/usage", service).status_code == 403
        assert get("/ehc/v1/export/usage", network.stack.admin_token).status_code == 200
        assert get("/ehc/v1/export/names", network.token).json()["code"] == \
            "EXPORT_SOURCE_UNKNOWN"
        for bad in ("１２", "12|3", "-1", "9" * 30):
            r = get("/ehc/v1/export/usage", network.token, after=bad)
            assert (r.status_code, r.json()["code"]) == (400, "CURSOR_INVALID"), bad
        r = get("/ehc/v1/export/cards", network.token, after="2020-01-01 00:00:00|x")
        assert r.status_code == 200 and r.json()["keys"] == ["updated_at", "card_id"]
        whole = get("/ehc/v1/export/cards", network.token, limit=5000).json()
        paged, cursor = [], None  # small pages over a two-key cursor: the same rows
        while True:
            page = get("/ehc/v1/export/cards", network.token, limit=7,
                       **({"after": cursor} if cursor else {})).json()
            paged += page["rows"]
            cursor = page["cursor"]
            if not page["more"]:
                break
        assert paged == whole["rows"] and len(paged) > 100 and not whole["more"]


def ehc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_the_cli_collects_checks_and_explains(network, tmp_path) -> None:
    store = tmp_path / "cli-store"
    res = ehc("data", "collect", "--store", str(store), "--url", network.stack.url,
              "--token", network.token, "--page-size", "500")
    assert res.returncode == 0, res.stderr
    assert "ehc.usage:" in res.stdout and "new rows" in res.stdout
    res = ehc("data", "check", "--store", str(store), "--out", str(tmp_path / "q"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "quality score 1.0000" in res.stdout
    assert (tmp_path / "q" / "quality.csv").stat().st_size > 0
    rewrite(Store(store), "ehc.usage", lambda df: pd.concat([df, df.iloc[[0]]]))
    res = ehc("data", "check", "--store", str(store))
    assert res.returncode == 1 and "ehc_usage: kept once" in res.stdout
    bad = ehc("data", "collect", "--store", str(tmp_path / "x"), "--url", network.stack.url,
              "--token", "wrong")
    assert bad.returncode == 2 and "FORBIDDEN" in bad.stderr and "Traceback" not in bad.stderr
    none = ehc("data", "check", "--store", str(tmp_path / "nothing"))
    assert none.returncode == 2 and "ehc data collect" in none.stderr
    # a network with no records yet: collected (an empty store), then nothing to check,
    # where it said "no store: run 'ehc data collect' first", just after that
    (tmp_path / "empty").mkdir(mode=0o700)
    empty = ehc("data", "check", "--store", str(tmp_path / "empty"))
    assert empty.returncode == 0 and "holds no records yet" in empty.stdout, empty.stderr


def test_a_silent_system_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CollectError, match="ConnectError"):
        collect("http://127.0.0.1:9", "t", Store(tmp_path / "s"))


# ---------------------------------------------------------------- analysis
def test_the_aggregates_read_the_records(network) -> None:
    from services.data import analysis

    store = Store(network.store)
    agg = analysis.all_aggregates(store)
    usage = store.connect().execute("SELECT count(*), count(*) FILTER (code_kind = 'fused') "
                                    "FROM ehc_usage").fetchone()
    assert agg["scans_by_step_hour"].scans.sum() == usage[0]
    assert agg["fused_against_plain"].fused.sum() == usage[1] > 0
    assert agg["scans_by_city"].scans.sum() == usage[0]
    assert agg["settlement_totals"].visits.sum() > 0
    beside = analysis.paper_beside(store).set_index("figure")
    assert beside.loc["EHC cards issued", "this store"] == agg["issuance_by_issuer_day"].cards.sum()


def test_dask_on_a_local_cluster_gives_the_same_counts(network) -> None:
    from dask.distributed import Client, LocalCluster

    from services.data import analysis

    duck = analysis.aggregate(Store(network.store), "scans_by_step_hour")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dask = analysis.scans_by_step_hour_dask(network.store, client)
    assert dask.astype("int64").equals(duck.astype("int64"))


# ---------------------------------------------------------------- feeding the twin
def test_the_records_give_back_the_scenario_inputs(network, tmp_path) -> None:
    """The round trip: the clinic's day went through the stack, its records were gathered;
    the estimates recover the scenario's inputs within three standard errors, and the
    day's own realised shares exactly (every online patient's station scans its code)."""
    from twin.experiments.from_records import estimate
    from twin.model.day import HospitalDay

    sc = load_scenario(Path("scenarios/small_clinic.yaml"))
    found = {e.key: e for e in estimate(network.store, sc, code_share=0.0)}
    truth = {"demand.test_share": sc.demand.test_share,
             "demand.prescription_share": sc.demand.prescription_share,
             "demand.adoption": sc.demand.adoption}
    for key, value in truth.items():
        e = found[key]
        assert abs(e.value - value) <= 3 * e.se, (key, e, value)
        assert 0 < e.se < 0.06
    p = HospitalDay(sc, 0).p
    came = p.online & ~p.no_show
    assert found["demand.test_share"].value == pytest.approx(p.test[came].mean())
    assert found["demand.prescription_share"].value == pytest.approx(p.rx[came].mean())
    assert not [k for k in found if k.startswith("day.hourly_profile")]  # one wall-clock hour
    groups: tuple[AgeGroup, ...] = ("child", "adult", "elderly")
    online = dict(zip(groups, sc.demand.adoption_of_ages(), strict=True))
    mean = sum(sc.demand.age_shares[g] * a for g, a in online.items())
    for code, g in enumerate(groups):
        e = found[f"demand.adoption_by_age.{g}"]
        assert abs(e.value - online[g] / mean) <= 3 * e.se, (g, e, online[g] / mean)
        realised = int((came & (p.age == code)).sum())  # the planted resident is an adult
        assert e.n == realised + (g == "adult"), (g, e.n, realised)
    out = tmp_path / "from_records.yaml"
    res = ehc("twin", "calibrate", "scenarios/small_clinic.yaml", "--from-records",
              str(network.store), "--code-share", "0", "--out", str(out))
    assert res.returncode == 0, res.stderr
    again = load_scenario(out)
    assert again.demand.adoption == pytest.approx(found["demand.adoption"].value, abs=1e-4)
    assert "standard error" in out.read_text() and str(network.store) in out.read_text()
    missing = ehc("twin", "calibrate", "scenarios/small_clinic.yaml", "--from-records",
                  str(tmp_path / "none"))
    assert missing.returncode == 2 and "ehc data collect" in missing.stderr


def test_a_system_not_served_is_skipped_not_fatal(tmp_path) -> None:
    """A stack without the hospital service: its sources are skipped and said so, the
    card systems' are collected."""
    settings = make_test_settings(tmp_path / "var")
    stack = start_in_thread(settings, ("registry", "healthcard", "socialcard", "payment"))
    try:
        done = collect(stack.url, deployment_secret(settings, "data_token"),
                       Store(tmp_path / "store"))
    finally:
        stack.stop()
    served = {d.source: d.served for d in done}
    assert served["hospital.bookings"] is False and served["hospital.checkins"] is False
    assert served["ehc.usage"] and served["essc.ledger"]
