"""Upgrades never break a store: a store made by the previous release (release 0.1, the
code of RELEASE taken from this repository's history), with real traffic in it (cards,
a binding, scans, a settled visit: chained under release 0.1's unkeyed scheme), is opened
by this version, which migrates it (Alembic, one history per system) and finds every row,
keyed audit chains that hold, and the settlement columns added with their defaults. On
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy import table as sql_table

from services.app import build_app
from services.common.settings import Settings
from tests.stack import backend_env, drop_backend

pytestmark = pytest.mark.one_cst_day  # reads the audit chain of "today"

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "3f18650600e7044c2ada305fec2a49fdd75cd019"  # release 0.1 (no migrations)

# run by release 0.1's code: a seeded corner, a fused visit settled, the row counts
OLD_TRAFFIC = r"""
import json, sys
# release 0.1's package, not the editable install's finder that maps to this checkout
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
from datetime import datetime
from sqlalchemy import func, inspect, select
from sqlalchemy import table as sql_table
from services.common.settings import Settings
from services.sdk import (AdminClient, ChannelClient, TerminalClient, generate_residents,
                          insured_record, start_in_thread)

live = start_in_thread(Settings())
admin = AdminClient(live.url, live.admin_token)
people = list(generate_residents(6, seed=11))
admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name,
                      "phone": p.phone} for p in people])
admin.add_insured([insured_record(p, i) for i, p in enumerate(people)])
admin.add_hospital("330100000777", "Old hospital", "330100")
cred = admin.add_shared_terminal("330100000777", "0101", 2, False)
term = TerminalClient(live.url, cred["terminal_id"], cred["secret"], city_code="330100",
                      terminal_type=2)
a = admin.add_shared_app("old app", strong_realname=True)
app = ChannelClient(live.url, a["app_key"], a["app_secret"])
for p in people[:3]:
    card = app.apply("01", p.id_number, p.name)
    essc = app.claim_essc("01", p.id_number, p.name)
    app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    term.verify(app.qrcode(card["card_id"])["qr_text"])
    token = term.verify(app.qrcode(card["card_id"], kind="fused")["qr_text"],
                        step=10105)["essc"]["ec_token"]
    sid = term.upload_fees(token, [{"code": "drugs", "category": "A",
                                    "amount_fen": 20000}])["settlement_id"]
    term.settle(sid)
counts, nonces = {}, {}
for name, system in live.app.state.systems.items():
    engine = getattr(system, "engine", None)
    if engine is None:
        continue
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            counts[f"{name}.{table}"] = conn.execute(
                select(func.count()).select_from(sql_table(table))
            ).scalar_one()
        if "shared_events" in inspect(conn).get_table_names():  # the nonces, the first
            nonces[name] = list(conn.exec_driver_sql(  # to expire, the paced buckets
                "SELECT count(*), min(expires_at), (SELECT count(*) FROM shared_events "
                "WHERE token LIKE 'pace:%%') FROM shared_events "
                "WHERE token LIKE 'nonce:%%'").one())
live.stop()
json.dump({"counts": counts, "nonces": nonces}, sys.stdout)
"""



def _head(system: str) -> str:
    from alembic.script import ScriptDirectory

    from services.common.db import migrations

    head = ScriptDirectory.from_config(migrations(system)).get_current_head()
    assert head is not None
    return head


HEADS = {"healthcard": _head("healthcard"), "socialcard": _head("socialcard")}

def _release_code(tmp: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("the upgrade test takes release 0.1's code from git, which is absent")
    probe = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", RELEASE + "^{commit}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this checkout has no history: release 0.1's code is not in it")
    old = tmp / "release-0.1"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", RELEASE, "services"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_release_0_1_store_with_traffic_upgrades_and_keeps_every_row(
        tmp_path, backend: str) -> None:
    env_db = backend_env(backend)  # skips PostgreSQL when it is not configured
    old = _release_code(tmp_path)
    var = tmp_path / "var"
    env = {**os.environ, **env_db, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(old)}
    made = subprocess.run([sys.executable, "-c", OLD_TRAFFIC], env=env, cwd=old,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    before, nonces = (lambda out: (out["counts"], out["nonces"]))(json.loads(made.stdout))
    assert before["socialcard.settlements"] == 3 and before["healthcard.usage_records"] >= 6
    assert not any(k.endswith(".alembic_version") for k in before)  # no history yet
    try:
        settings = Settings(var_dir=var, log_level="WARNING",
                            database_url=env_db.get("EHC_DATABASE_URL"),
                            db_schema_prefix=env_db.get("EHC_DB_SCHEMA_PREFIX", ""))
        migrated_at = time.time()
        app = build_app(settings)  # opens and migrates every store
        for name, system in app.state.systems.items():
            engine = getattr(system, "engine", None)
            if engine is None:
                continue
            with engine.connect() as conn:
                revision = MigrationContext.configure(conn).get_current_revision()
                assert revision == HEADS.get(name), revision
                def rows(table: str) -> int:
                    return conn.execute(select(func.count()).select_from(
                        sql_table(table))).scalar_one()

                moved, first_expiry, paced = nonces.get(name, (0, None, 0))
                for key, count in before.items():
                    if key.startswith(name + "."):
                        table = key.split(".", 1)[1]
                        kept = count - moved - paced if table == "shared_events" else count
                        assert rows(table) == kept, (key, rows(table), kept)
                if name in HEADS and moved:  # migration 0004: nonces in their own table,
                    # every one not yet expired (all, unless the host took a minute)
                    assert rows("shared_nonces") == moved or (
                        migrated_at >= first_expiry and rows("shared_nonces") < moved)
                if name in HEADS:  # migrations 0006 / 0005: the buckets still pacing
                    assert rows("shared_paces") <= paced
        if backend == "sqlite":  # migrations 0004-0006: tables keyed without a rowid
            with app.state.systems["healthcard"].engine.connect() as conn:
                layouts = dict(conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE name IN "
                    "('code_uses', 'shared_nonces', 'shared_paces')").all())
            assert all("WITHOUT ROWID" in layouts.get(t, "")
                       for t in ("code_uses", "shared_nonces", "shared_paces")), layouts
        essc = app.state.systems["socialcard"]
        with essc.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("settlements")}
            states = conn.execute(text("SELECT state, confirm_attempts FROM settlements")
                                  ).all()
        assert {"confirm_attempts", "next_confirm_at"} <= columns
        for side, table, index in (("socialcard", "settlements", "ix_settlements_updated"),
                                   ("healthcard", "cards", "ix_cards_updated"),
                                   ("healthcard", "bindings", "ix_binding_updated")):
            with app.state.systems[side].engine.connect() as conn:  # the data layer's
                assert index in {i["name"] for i in inspect(conn).get_indexes(table)}
                # the callers' generation (migration 0003): its one row
                assert len(conn.execute(text("SELECT generation FROM caller_changes")
                                        ).all()) == 1
        assert sorted(states) == [("settled", 0)] * 3
        # release 0.1's chains, re-linked under the key, hold (and stay sealed from now)
        import asyncio
        from datetime import datetime

        from services.common.cards.seals import verify_sealed
        from services.common.cst import CST

        day = datetime.now(CST).strftime("%Y%m%d")
        for side in (app.state.systems["healthcard"], essc):
            report = asyncio.run(verify_sealed(side, day))
            assert report["clean"], report
            assert report["usage"]["rows"] >= 3
        # opening it again changes nothing; 'ehc db upgrade' says where each store is
        res = subprocess.run([sys.executable, "-m", "twin.cli", "db", "upgrade"],
                             env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert f"socialcard: at {HEADS['socialcard']}" in res.stdout, res.stdout
        again = build_app(settings)
        with again.state.systems["socialcard"].engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM settlements")).scalar_one() == 3
    finally:
        drop_backend(env_db)
