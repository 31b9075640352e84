"""`ehc serve` runs the stack; `ehc seed` fills it over HTTP and writes what the SDK needs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import ChannelClient, TerminalClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_then_seed_then_verify(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING"}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "twin.cli", "serve", "--port", str(port)],
                              env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/ping").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
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
        assert all(set(c) == {"card_id", "empi", "city"} for c in seed["cards"])  # no PII
        inst = seed["institutions"][0]
        t = inst["terminals"][0]
        app = ChannelClient(url, seed["channel_apps"][0]["app_key"],
                            seed["channel_apps"][0]["app_secret"])
        term = TerminalClient(url, t["terminal_id"], t["secret"], city_code=inst["city_code"])
        code = app.qrcode(seed["cards"][0]["card_id"])["qr_text"]
        assert term.verify(code)["card_id"] == seed["cards"][0]["card_id"]
        bad = subprocess.run([sys.executable, "-m", "twin.cli", "seed", "--url", url,
                              "--out", str(tmp_path / "x.json")], env={**env,
                              "EHC_ADMIN_TOKEN": ""}, capture_output=True, text=True)
        assert bad.returncode == 2 and "admin-token" in bad.stderr + bad.stdout
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
