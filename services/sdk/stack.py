"""Run the stack: in the foreground (``ehc serve``) or on a free local port in a
background thread (demos, in-process seeding, tests) — always real HTTP through uvicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from ..app import ALL_SYSTEMS, build_app, close_app, opened_app
from ..common.db import unreachable
from ..common.secrets_store import deployment_secret
from ..common.settings import Settings


@dataclass
class RunningStack:
    url: str
    admin_token: str
    settings: Settings
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        close_app(self.app)

    def __enter__(self) -> RunningStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(settings: Settings, systems: Sequence[str] = ALL_SYSTEMS,
                    host: str = "127.0.0.1", port: int = 0) -> RunningStack:
    app = build_app(settings, systems)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stack did not start")
        time.sleep(0.02)
    url = f"http://{host}:{sock.getsockname()[1]}"
    return RunningStack(url, deployment_secret(settings, "admin_token"), settings, app,
                        server, thread)


def spawn_server(env: dict[str, str], port: int, *uvicorn_args: str,
                 **popen: Any) -> subprocess.Popen:
    """The stack in its own uvicorn process(es) on 127.0.0.1:``port``; returns once
    ``/ping`` answers (raises if it never does, and stops what it started)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "services.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), *uvicorn_args], env=env, **popen)
    url = f"http://127.0.0.1:{port}/ping"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_server(proc)
            raise RuntimeError("the stack did not start")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGINT (workers finish and leave their statistics), then kill if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """CPU time a process has spent, every thread's, those that have ended too: the
    kernel's CPU clock of the process (``clock_getcpuclockid``, nanoseconds). Else
    ``/proc/PID/stat``'s user and system time, which come in clock ticks (10 ms: 50 us a
    call over 200 calls). (Summing the live threads' ``schedstat`` loses the time of a
    thread that ends between two readings: a reading could go down.)"""
    try:
        return time.clock_gettime((~pid << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, SCHED)
    except OSError:  # not Linux's clock ids, or the process is gone
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listen_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` (another there, a name that does not
    resolve), in one line, or None: asked before a banner says it serves."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(infos[0][4])
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def store_unreachable(url: str) -> str | None:
    """Why the store at ``url`` cannot be opened, in one line (no password), or None: what a
    command that would run for minutes asks first."""
    return unreachable(url)


def prepare_store(settings: Settings) -> str:
    """Create every system's tables, keys and secrets in the configured store once (before
    several workers race for them); returns the admin token. A store that cannot be opened
    raises ``StoreNotOpened`` (a ``RuntimeError``) naming it and why."""
    opened_app(settings)
    return deployment_secret(settings, "admin_token")
