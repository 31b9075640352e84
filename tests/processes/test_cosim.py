"""Co-simulation and outages: the twin's online patients through the real card stack
(in-process and in a separate server process), the stack's records agreeing exactly with
the model's journeys, real refusals during injected faults making patients fall back,
and the scripted outage's queue blow-up and recovery against the no-fault day."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import spawn_server, start_in_thread, stop_server
from tests.stack import free_port, make_test_settings
from twin.experiments.cosim import run_cosim
from twin.model.day import HospitalDay
from twin.network.scripted import Network, ScriptedNetwork
from twin.results.kpis import kpis
from twin.scenario.schema import Fault, load_scenario

pytestmark = pytest.mark.one_cst_day  # reports "today" of what it did

SMALL = Path("scenarios/small_clinic.yaml")


def ehc(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True,
                          text=True, timeout=600, env=env)


def test_the_plain_twin_is_unchanged_by_the_network_hook() -> None:
    sc = load_scenario(SMALL)
    plain = kpis(HospitalDay(sc, 1).run())
    assert kpis(HospitalDay(sc, 1, network=Network()).run()) == plain
    assert kpis(HospitalDay(sc, 1, network=ScriptedNetwork([])).run()) == plain


def test_cosimulated_day_matches_the_stack_one_to_one(tmp_path: Path) -> None:
    """A tertiary hospital's day at reduced size (the same design scaled to 500 visits)."""
    res = ehc("twin", "run", "scenarios/tertiary_adoption_60.yaml", "--visits", "500",
              "--cosim", "--out", str(tmp_path / "cosim"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads((tmp_path / "cosim" / "cosim.json").read_text())
    c = out["check"]
    assert c["match"], c
    assert c["usage_records"] == c["model_scans_ok"] + c["verifications_by_step"]["10105"]
    assert c["usage_records_by_step"] == c["verifications_by_step"]
    assert c["settled_on_stack"] == c["settled_by_model"] > 0
    assert c["ledger_clean"] and all(c["audit_clean"].values())
    h = c["hospital"]  # the outpatient service: bookings, check-ins, calls, reports, bills
    assert h["match"] and not h["refusals"], h
    assert h["bookings"] == h["booked_by_model"] > 100
    assert h["checkins"] == h["checkins_by_model"] > 100 and h["revisits_by_model"] > 0
    assert h["called"] == h["calls_by_model"] == h["checkins"] + h["revisits_by_model"]
    assert h["booking_states"]["no_show"] >= h["booked_never_checked_in"] > 0
    assert h["reports_published"] == h["reports_read_back"] > 0
    assert h["bills_by_paid_by"]["essc"] == c["settled_on_stack"]
    assert h["bills_by_paid_by"].get("self_pay", 0) == c["uninsured_pays"]
    assert out["online_patients"] > 100 and out["patients_per_s"] > 0
    assert out["latency_ms"]["p50"] > 0  # measured, and it entered the model
    assert "match" in res.stdout and "patients/s" in res.stdout


def test_real_faults_make_patients_fall_back_and_records_still_match(tmp_path: Path) -> None:
    sc = load_scenario(SMALL).model_copy(update={"faults": [
        Fault(target="card_network", start="10:00", end="10:40"),
        Fault(target="socialcard", start="10:40", end="11:20"),
        Fault(target="card_network", start="11:20", end="11:35", mode="slow", delay_ms=120)]})
    stack = start_in_thread(make_test_settings(tmp_path / "var",
                                               rate_limit_terminal_per_s=0))
    try:
        out = run_cosim(sc, stack.url, stack.admin_token, tmp_path / "out", real_delays=True)
    finally:
        stack.stop()
    c = out["check"]
    assert c["match"], c
    assert c["refusals"].get("SERVICE_UNAVAILABLE", 0) > 0  # the stack really refused
    assert c["refusals"].get("PARTIAL_NO_VOUCHER", 0) > 0  # e-SSC down: partial answers
    assert out["fallbacks"]["window_checkin"] > 0 and out["fallbacks"]["window_payment"] > 0
    # the patients who checked in at a window are not on the board; failed phone
    # payments' bills are paid at a window, and it all still adds up
    assert c["hospital"]["checkins"] < c["hospital"]["bookings"]
    assert c["hospital"]["bills_by_paid_by"]["window"] > 0
    assert out["latency_ms"]["max"] >= 120  # the slow window's real delay was measured
    reg = out["outage"]["faults"][0]["stations"]["registration window"]
    assert reg["peak_queue"] > reg["peak_queue_no_fault"]
    assert Path(out["outage"]["plot"]).stat().st_size > 10_000


@pytest.mark.slow
def test_cosimulation_over_http_to_a_separate_server(tmp_path: Path) -> None:
    var = tmp_path / "var"
    port = free_port()
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "EHC_RATE_LIMIT_TERMINAL_PER_S": "0"}
    server = spawn_server(env, port)
    try:
        token = deployment_secret(Settings(var_dir=var), "admin_token")
        res = ehc("twin", "run", str(SMALL), "--cosim", "--url", f"http://127.0.0.1:{port}",
                  "--out", str(tmp_path / "http"), env={**os.environ,
                                                         "EHC_ADMIN_TOKEN": token})
    finally:
        stop_server(server)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert json.loads((tmp_path / "http" / "cosim.json").read_text())["check"]["match"]
    res = ehc("twin", "run", str(SMALL), "--cosim", "--url", "http://127.0.0.1:9",
              env={**os.environ, "EHC_ADMIN_TOKEN": ""})
    assert res.returncode == 2 and "admin-token" in res.stdout + res.stderr
    res = ehc("twin", "run", str(SMALL), "--cosim", "--url", "http://127.0.0.1:9",
              "--out", str(tmp_path / "gone"), env={**os.environ, "EHC_ADMIN_TOKEN": "x"})
    assert res.returncode == 2 and "cannot reach the stack" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_scripted_outage_blows_up_window_queues_and_recovers(tmp_path: Path) -> None:
    res = ehc("twin", "run", "scenarios/small_clinic_outage.yaml", "--out",
              str(tmp_path / "o"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "o" / "outage.json").read_text())
    assert summary["extra_minutes_per_visit"]["mean"] > 0
    assert summary["fallbacks_per_day"]["window_checkin"] > 0
    reg = summary["faults"][0]["stations"]["registration window"]
    assert reg["peak_queue"] > 3 * max(reg["peak_queue_no_fault"], 1)
    assert reg["recovery_min"] is not None and reg["recovery_min"] < 180
    queues = pd.read_csv(tmp_path / "o" / "outage_queues.csv")
    assert set(queues.run) == {"outage", "no fault"}
    assert (tmp_path / "o" / "outage.png").stat().st_size > 10_000
    assert "back to normal" in res.stdout


def test_a_slow_fault_is_simulated_time_unless_real_delays_are_asked() -> None:
    """The README's outage scenario is slow (3 s a call) for an hour: by default the
    delay is added to each call's time in the model and the stack never sleeps it."""
    from twin.experiments.cosim import LiveNetwork

    class Drill:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def set_faults(self, delay_ms: int = 0, unavailable: bool = False,
                       system: str = "ehc") -> None:
            self.calls.append((system, delay_ms, unavailable))

    faults = load_scenario(Path("scenarios/small_clinic_outage.yaml")).faults
    for real, slept in ((False, 0), (True, 3000)):
        net = LiveNetwork("http://127.0.0.1:9", "token", faults, real_delays=real)
        drill = Drill()  # the drill calls, recorded
        net.admin = drill  # type: ignore[assignment]
        net._faults_at(11 * 60 + 30)  # in the slow hour
        assert [d for _, d, _ in drill.calls] == ([slept, slept] if real else [])
        assert net._minutes(0.0) - (0.0 if real else 3000 / 60_000) >= 0
        assert net.delay_min == pytest.approx(0.05)
        net._faults_at(10 * 60 + 30)  # in the down hour: the stack refuses for real
        assert ("ehc", 0, True) in drill.calls
