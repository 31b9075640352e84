"""`ehc serve` runs the stack; `ehc seed` fills it over HTTP and writes what the SDK needs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from services.common.cst import CST
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import ChannelClient, TerminalClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.one_cst_day  # reconciles today's settlements
def test_serve_then_seed_then_verify(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING"}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "twin.cli", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/ping").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        banner = ""
        while server.stdout and "seed it" not in banner:  # the banner's last line
            banner += server.stdout.readline()
        for shown in (url, f"{url}/docs", f"{url}/channel/", "admin_token",
                      str(var / "dev-secrets.json"), f"ehc seed --url {url}"):
            assert shown in banner, (shown, banner)
        assert httpx.get(url + "/docs").status_code == 200
        spec = httpx.get(url + "/openapi.json").json()
        assert "/ehc/v1/qrcodes/verify" in spec["paths"]
        token = deployment_secret(Settings(var_dir=var), "admin_token")
        out = tmp_path / "seed.json"
        res = subprocess.run([sys.executable, "-m", "twin.cli", "seed", "--residents", "15",
                              "--out", str(out), "--url", url, "--admin-token", token],
                             env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        seed = json.loads(out.read_text())
        assert len(seed["cards"]) == 15 and len(seed["institutions"]) == 11
        keys = {"card_id", "empi", "city", "ssc_card_no", "region"}  # no personal data
        assert all({"card_id", "empi", "city"} <= set(c) <= keys for c in seed["cards"])
        insured = [c for c in seed["cards"] if "ssc_card_no" in c]
        assert len(insured) == 14  # nine in ten residents are insured
        inst = seed["institutions"][0]
        t = inst["terminals"][0]
        app = ChannelClient(url, seed["channel_apps"][0]["app_key"],
                            seed["channel_apps"][0]["app_secret"])
        term = TerminalClient(url, t["terminal_id"], t["secret"], city_code=inst["city_code"])
        code = app.qrcode(seed["cards"][0]["card_id"])["qr_text"]
        assert term.verify(code)["card_id"] == seed["cards"][0]["card_id"]
        shop = seed["pharmacies"][0]  # one designated retail pharmacy a city, its till
        assert len(seed["pharmacies"]) == 11 and shop["code"] not in {
            i["code"] for i in seed["institutions"]}
        till = TerminalClient(url, shop["terminals"][0]["terminal_id"],
                              shop["terminals"][0]["secret"], city_code=shop["city_code"])
        code = app.qrcode(seed["cards"][1]["card_id"])["qr_text"]
        assert till.verify(code, step=10103)["card_id"] == seed["cards"][1]["card_id"]
        bad = subprocess.run([sys.executable, "-m", "twin.cli", "seed", "--url", url,
                              "--out", str(tmp_path / "x.json")], env={**env,
                              "EHC_ADMIN_TOKEN": ""}, capture_output=True, text=True)
        assert bad.returncode == 2 and "admin-token" in bad.stderr + bad.stdout
        for where, token_sent, says in ((url, "not-" + token, "FORBIDDEN"),
                                        ("http://127.0.0.1:9", token, "cannot reach")):
            failed = _ehc(env, "seed", "--residents", "3", "--url", where, "--admin-token",
                          token_sent, "--out", str(tmp_path / "y.json"))
            assert failed.returncode == 2 and says in failed.stderr, failed.stderr
            assert "Traceback" not in failed.stderr and not (tmp_path / "y.json").exists()
        _fusion_commands(env, url, token, len(insured))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)


def _ehc(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _fusion_commands(env: dict, url: str, token: str, insured: int) -> None:
    """`ehc fuse --all`, `ehc reconcile bindings` and `ehc sync` against the server."""
    remote = ("--url", url, "--admin-token", token)
    res = _ehc(env, "fuse", "--dry-run", *remote)
    assert res.returncode == 0 and f"{insured} e-SSC holder(s)" in res.stdout, res.stdout
    res = _ehc(env, "fuse", *remote)  # --all is the default
    assert res.returncode == 0, res.stderr
    assert f"holders {insured}" in res.stdout and f"bound {insured}" in res.stdout
    assert "opened 0" in res.stdout  # every seeded resident had an EHC already
    res = _ehc(env, "fuse", "--all", *remote)  # idempotent: nothing left to do
    assert res.returncode == 0 and "holders 0" in res.stdout, res.stdout
    res = _ehc(env, "reconcile", "bindings", *remote)
    assert res.returncode == 0 and "both sides agreed already" in res.stdout, res.stdout
    res = _ehc(env, "sync", *remote)
    assert res.returncode == 0 and "usage records shared" in res.stdout, res.stdout
    res = _ehc(env, "reconcile", "bindings", "--url", "http://127.0.0.1:9", "--admin-token",
               token)
    assert res.returncode == 2 and "error" in res.stderr and "Traceback" not in res.stderr
    day = datetime.now(CST).date().isoformat()
    res = _ehc(env, "reconcile", "settlements", "--date", day, *remote)
    assert res.returncode == 0 and "0 settlements" in res.stdout and "clean" in res.stdout
    res = _ehc(env, "reconcile", "settlements", *remote)  # today in China by default
    assert res.returncode == 0 and f"{day}: 0 settlements" in res.stdout, res.stdout
    res = _ehc(env, "reconcile", "settlements", "--date", "2026-02-30", *remote)
    assert res.returncode == 2 and "not a day" in res.stderr, res.stderr


def test_serve_on_a_port_in_use_says_so_before_its_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = _ehc({**os.environ, "EHC_VAR_DIR": str(tmp_path / "var")}, "serve", "--port",
                   str(port))
    assert res.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "API" not in res.stdout and "Traceback" not in res.stderr
    assert not (tmp_path / "var").exists()  # no store made for a server that cannot start


@pytest.mark.parametrize("systems,said", [
    ("nonsense", "unknown systems: nonsense (known: registry"),
    ("channel", "the channel needs the registry, EHC, e-SSC and SMS systems"),
    (" , ", "no system to run")])
def test_serve_refuses_systems_that_cannot_run_in_one_line(tmp_path: Path, systems: str,
                                                          said: str) -> None:
    """A traceback before; an empty list served an app of no system."""
    res = _ehc({**os.environ, "EHC_VAR_DIR": str(tmp_path / "var")}, "serve", "--port",
               str(free_port()), "--systems", systems)  # not 9: others' unreachable port
    assert res.returncode == 2 and res.stderr.startswith(f"error: {said}"), res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "API" not in res.stdout


@pytest.mark.parametrize("port", ["0", "70000"])
def test_serve_refuses_a_port_it_would_not_serve_on(tmp_path: Path, port: str) -> None:
    """0 is a port the kernel picks (the banner said :0), 70000 one the socket layer wraps
    to 4464 (the banner said :70000): neither is where a client would find the server."""
    res = _ehc({**os.environ, "EHC_VAR_DIR": str(tmp_path / "var")}, "serve", "--port", port)
    assert res.returncode == 2 and "--port" in res.stderr, res.stderr
    assert "API" not in res.stdout and not (tmp_path / "var").exists()
