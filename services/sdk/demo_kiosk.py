"""``make run``'s visit through the phone: a resident logs in to the unified entry, books
the next slot of a doctor's session today, is checked in after a real scan of their code,
sees their place on the calling board (a walk-in is called first: an appointment holder
is called at their slot's time, not before), and reads the report the lab published."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ..common.cst import CST
from .clients import AdminClient, ChannelClient, HospitalClient, ResidentClient, TerminalClient
from .synthetic import generate_residents


def run_kiosk(url: str, admin: AdminClient, seed: dict[str, Any], console: Console) -> dict:
    now = datetime.now(CST)
    start = (now.hour * 60 + now.minute) // 15 * 15 + 15  # the next quarter hour
    if start + 60 > 24 * 60:
        console.print("[dim]The phone as the kiosk: skipped (no session left today)[/]")
        return {}
    clock = [f"{m // 60:02d}:{m % 60:02d}" for m in (start, start + 60)]
    hospital = HospitalClient(url, admin.token)
    hospital.add_department("0101", "内科 internal medicine")
    doctor = secrets.token_hex(4)
    hospital.add_doctor(doctor, "0101", "王医生")
    sid = hospital.add_session(doctor, now.date().isoformat(), *clock)
    person = next(iter(generate_residents(1, seed=int(now.timestamp()))))
    admin.add_residents([{"id_type": "01", "id_number": person.id_number,
                          "name": person.name, "phone": person.phone}])
    me = ResidentClient(url)
    me.log_in_reading_sms(person.id_number, person.name, person.phone, admin)
    card = me.claim()["ehc"]["card_id"]
    booked = me.book(sid, clock[0])
    inst = seed["institutions"][0]
    t = inst["terminals"][0]
    term = TerminalClient(url, t["terminal_id"], t["secret"], city_code=inst["city_code"])
    scanned = term.verify(me.code()["qr_text"])
    held = hospital.check_in(sid, scanned["card_id"])
    app_cred = seed["channel_apps"][0]
    with ChannelClient(url, app_cred["app_key"], app_cred["app_secret"]) as app:
        walk_in = term.verify(app.qrcode(seed["cards"][0]["card_id"])["qr_text"])["card_id"]
    hospital.check_in(sid, walk_in)
    called = hospital.call(sid)
    place = me.queue_place(sid)
    hospital.publish_report(card, "lab", "血常规 blood count", "WBC 6.1 x10^9/L (within range)")
    report = me.reports()[0]
    table = Table(title="The phone as the hospital's kiosk (unified entry -> outpatient service)")
    table.add_column("step")
    table.add_column("what the network answered")
    table.add_row("log in (SMS code), claim the EHC", f"card {card[:12]}...")
    table.add_row("book the next slot", f"{booked['slot']} today, {booked['state']}")
    table.add_row("check in: the code scanned at the desk", f"{held['kind']}, due {held['due']}")
    table.add_row("the board calls", f"a {called['kind']} first (the holder waits for "
                  f"{held['due']})" if called else "nobody due yet")
    table.add_row("my place on the board", f"{place['position']}, about "
                  f"{place['expected_wait_min']:.0f} min")
    table.add_row("my reports", f"{report['title']}: {report['body']}")
    console.print(table)
    for c in (term, me, hospital):
        c.close()
    return {"booked": booked["slot"], "kind": held["kind"],
            "called": called["kind"] if called else None, "place": place["position"],
            "report": report["title"]}
