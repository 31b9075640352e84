"""The card network as several `ehc serve` processes on one store behind HAProxy, run
with the operator's own balancer file (``deploy/haproxy.cfg``), or a deployment that is
already running somewhere (``--target URL``, with the interface of ``runner.Server``:
``url``, ``admin_token``, ``cpu_seconds()``, ``stop()``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from services.sdk import AdminClient, SdkError, explain, spawn_server, stop_server

HAPROXY_CFG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy.cfg"
SERVERS_IN_CFG = 2  # the `server` lines of deploy/haproxy.cfg


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None)


def start_haproxy(bind_port: int, server_ports: list[int], **popen: Any) -> subprocess.Popen:
    """HAProxy in the foreground on ``deploy/haproxy.cfg``; returns once it forwards."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("HAProxy is not installed (Debian: apt-get install haproxy)")
    env = {**os.environ, "EHC_LB_BIND": f"127.0.0.1:{bind_port}",
           **{f"EHC_SERVER_{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(server_ports)}}
    proc = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CFG)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("HAProxy did not start: "
                               + (proc.stderr.read().decode()[-500:] if proc.stderr else ""))
        try:
            if httpx.get(f"http://127.0.0.1:{bind_port}/ping", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("HAProxy did not forward to the servers within 20 s")


def servers_of(url: str, institutions: list[dict]) -> dict[str, str] | None:
    """Institution code -> the server the balancer at ``url`` sends its terminals to
    (``deploy/haproxy.cfg`` names it on every answer, ``x-ehc-served-by``); None where the
    answers name none (one server, or another balancer). Institutions without terminals
    in the seed are left out (nobody scans there)."""
    named: dict[str, str] = {}
    with httpx.Client(base_url=url) as client:
        for inst in institutions:
            if not inst["terminals"]:
                continue
            answer = client.get("/ping", headers={"x-ehc-key": inst["terminals"][0][
                "terminal_id"]})
            if "x-ehc-served-by" not in answer.headers:
                return None
            named[inst["code"]] = answer.headers["x-ehc-served-by"]
    return named


class Fleet:
    """``servers`` processes on one prepared store behind HAProxy; ``kill_one`` takes the
    first down hard (SIGKILL to its process group, as a machine that dies)."""

    def __init__(self, env: dict[str, str], ports: list[int], bind_port: int,
                 uvicorn_args: list[str], **popen: Any) -> None:
        if len(ports) != SERVERS_IN_CFG:
            raise ValueError(f"deploy/haproxy.cfg names {SERVERS_IN_CFG} servers")
        self.procs = [spawn_server(env, p, *uvicorn_args, start_new_session=True, **popen)
                      for p in ports]
        self.killed: list[int] = []
        try:
            self.haproxy = start_haproxy(bind_port, ports, **popen)
        except Exception:
            for proc in self.procs:
                stop_server(proc)
            raise

    def kill_one(self) -> None:
        proc = self.procs[0]
        if proc.poll() is not None:
            return  # stopped already (the run ended first)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.killed.append(0)

    def stop(self) -> None:
        for proc in self.procs:
            stop_server(proc)
        self.haproxy.terminate()
        try:
            self.haproxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.haproxy.kill()


class Remote:
    """A deployment running elsewhere (``ehc loadtest --target URL``): seeded and checked
    through its admin token; its CPU is not this machine's to read."""

    def __init__(self, url: str, admin_token: str) -> None:
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        try:
            with AdminClient(self.url, admin_token) as admin:
                admin.request("GET", "/ehc/v1/admin/server-stats")  # the token works here
        except (SdkError, httpx.HTTPError) as exc:  # the CLI prints it, no traceback
            raise RuntimeError(f"--target {self.url}: {explain(exc)}") from exc

    def cpu_seconds(self) -> float:
        return float("nan")

    def stop(self) -> dict:
        """The statistics of whichever server answers (behind a balancer: one of them)."""
        with AdminClient(self.url, self.admin_token) as admin:
            return {"workers": 0, "routes": {}, "remote": True,
                    "one_server": admin.request("GET", "/ehc/v1/admin/server-stats")}
