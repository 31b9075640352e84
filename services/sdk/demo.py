"""The demo of ``make run``: a live stack, a seeded province, cards issued and verified
from hospital terminals in all 11 cities, the refusals a real network must make,
two-card fusion (one resident's code through the unified entry, fail soft, auto-opening)
and a visit through the phone as the hospital's kiosk."""

from __future__ import annotations

import shutil
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..common.settings import Settings
from ..rules.codes import Step
from .clients import AdminClient, ChannelClient, TerminalClient
from .demo_fusion import refusal_table, run_fusion
from .demo_kiosk import run_kiosk
from .seeding import seed_stack
from .stack import start_in_thread
from .synthetic import generate_residents


def run_demo(var_dir: Path, residents: int = 220, console: Console | None = None) -> dict:
    console = console or Console()
    demo_dir = var_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    settings = Settings(var_dir=demo_dir, log_level="WARNING")
    with start_in_thread(settings) as stack:
        console.print(f"[bold]Card network[/] started for this demo, in this process "
                      f"(SQLite under {demo_dir}, hardened dynamic codes; it stops with "
                      "the demo: 'ehc serve' runs one that stays)")
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("issuing cards", total=residents)
            seed = seed_stack(stack.url, stack.admin_token, residents,
                              progress=lambda n: bar.advance(task, n))
        app_cred = seed["channel_apps"][0]
        app = ChannelClient(stack.url, app_cred["app_key"], app_cred["app_secret"])
        by_city: dict[str, list[dict]] = {}
        for c in seed["cards"]:
            by_city.setdefault(c["city"], []).append(c)
        table = Table(title="Scans at one hospital per city (real HTTP, signed terminals)")
        for col in ("city", "hospital", "cards", "verified", "p50 ms", "max ms"):
            table.add_column(col, justify="right" if col not in ("city", "hospital") else "left")
        totals: dict[str, Any] = {"verified": 0, "cards": len(seed["cards"])}
        for inst in seed["institutions"]:
            terms = {t["role"]: TerminalClient(stack.url, t["terminal_id"], t["secret"],
                                               city_code=inst["city_code"],
                                               terminal_type=t["terminal_type"],
                                               institution_name=inst["name"])
                     for t in inst["terminals"]}
            lat = []
            people = by_city.get(inst["city"], [])[:10]
            for card in people:
                code = app.qrcode(card["card_id"])["qr_text"]
                for role, step in (("registration window", Step.REGISTRATION),
                                   ("pharmacy window", Step.PHARMACY)):
                    t0 = time.perf_counter()
                    terms[role].verify(code, step=step)
                    lat.append((time.perf_counter() - t0) * 1000)
            totals["verified"] += len(lat)
            if lat:
                table.add_row(inst["city"], inst["code"], str(len(by_city[inst["city"]])),
                              str(len(lat)), f"{statistics.median(lat):.1f}",
                              f"{max(lat):.1f}")
            for t in terms.values():
                t.close()
        console.print(table)
        totals["refusals"] = _refusals(stack, seed, app, console)
        app.close()
        with AdminClient(stack.url, stack.admin_token) as admin:
            totals["fusion"] = run_fusion(stack.url, admin,
                                          {**seed, "admin_token": stack.admin_token}, console)
            totals["kiosk"] = run_kiosk(stack.url, admin, seed, console)
    return totals


def _refusals(stack, seed: dict, app: ChannelClient, console: Console) -> dict[str, str]:
    inst = seed["institutions"][0]
    t = inst["terminals"][0]
    term = TerminalClient(stack.url, t["terminal_id"], t["secret"], city_code=inst["city_code"])
    k = inst["terminals"][1]  # the self-service kiosk: it reads no physical cards
    kiosk = TerminalClient(stack.url, k["terminal_id"], k["secret"], city_code=inst["city_code"],
                           terminal_type=k["terminal_type"])
    with AdminClient(stack.url, stack.admin_token) as admin:
        cred = admin.add_shared_app("an app the residents never chose")
    hostile = ChannelClient(stack.url, cred["app_key"], cred["app_secret"])
    first = next(iter(generate_residents(1)))  # seed_stack's first resident: card_id's
    card_id = seed["cards"][0]["card_id"]
    other_id = seed["cards"][1]["card_id"]
    code = app.qrcode(card_id)["qr_text"]
    late = (datetime.now() + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    cases = {
        "tampered code": lambda: term.verify(code[:-1] + ("1" if code[-1] == "0" else "0")),
        "block pasted behind another card": lambda: term.verify(other_id + code[64:]),
        "replay beyond the limit": lambda: [term.verify(code) for _ in range(10)],
        "terminal clock off by an hour": lambda: term.verify(app.qrcode(card_id)["qr_text"],
                                                             time=late),
        "lost card": lambda: (app.report_lost(other_id), term.verify(other_id + ":1")),
        "static code built from a card ID, at a kiosk": lambda: kiosk.verify(card_id + ":1"),
        "a code padded with a newline": lambda: term.verify(
            app.qrcode(card_id)["qr_text"] + "\n"),
        "another app applies with a resident's ID and name": lambda: hostile.apply(
            "01", first.id_number, first.name),
    }
    out = refusal_table("What the network refuses (each writes no usage record)", cases,
                        console)
    term.close()
    kiosk.close()
    hostile.close()
    return out

