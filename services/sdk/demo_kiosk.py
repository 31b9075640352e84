"""``make run``'s visit through the phone: a resident logs in to the unified entry, books
a slot of a doctor's session, is checked in after a real scan of their code, sees their
place on the calling board (a walk-in is called first: an appointment holder is called at
their slot's time, not before), is called at it, reads the report the lab published, and
pays the visit's bill from the phone's wallet. The session is a drill (its clock set by
the demo to the morning), so the whole visit shows at any hour."""

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
    hospital = HospitalClient(url, admin.token)
    hospital.add_department("0101", "内科 internal medicine")
    doctor = secrets.token_hex(4)
    hospital.add_doctor(doctor, "0101", "王医生")
    sid = hospital.add_session(doctor, now.date().isoformat(), "08:00", "09:00", drill=True)
    hospital.set_clock(sid, "07:40")
    person = next(iter(generate_residents(1, seed=int(now.timestamp()))))
    admin.add_residents([{"id_type": "01", "id_number": person.id_number,
                          "name": person.name, "phone": person.phone}])
    me = ResidentClient(url)
    me.log_in_reading_sms(person.id_number, person.name, person.phone, admin)
    card = me.claim()["ehc"]["card_id"]
    booked = me.book(sid, "08:00")
    inst = seed["institutions"][0]
    t = inst["terminals"][0]
    term = TerminalClient(url, t["terminal_id"], t["secret"], city_code=inst["city_code"])
    hospital.set_clock(sid, "07:52")
    scanned = term.verify(me.code()["qr_text"])
    held = hospital.check_in(sid, scanned["card_id"])
    app_cred = seed["channel_apps"][0]
    with ChannelClient(url, app_cred["app_key"], app_cred["app_secret"]) as app:
        walk_in = term.verify(app.qrcode(seed["cards"][0]["card_id"])["qr_text"])["card_id"]
    hospital.check_in(sid, walk_in)
    first = hospital.call(sid)
    place = me.queue_place(sid)
    hospital.set_clock(sid, "08:00")
    mine = hospital.call(sid)
    hospital.publish_report(card, "lab", "血常规 blood count", "WBC 6.1 x10^9/L (within range)")
    report = me.reports()[0]
    hospital.charge(card, [{"code": "consultation", "category": "A", "amount_fen": 2_500},
                           {"code": "blood-count", "category": "A", "amount_fen": 3_000}],
                    session_id=sid)
    bill = hospital.bill(card)
    paid = hospital.bill_paid(bill["bill_id"], card, "self_pay")
    table = Table(title="The phone as the hospital's kiosk (unified entry -> outpatient "
                  "service; a drill session, its clock from 07:40)")
    table.add_column("step")
    table.add_column("what the network answered")
    table.add_row("log in (SMS code), claim the EHC", f"card {card[:12]}...")
    table.add_row("book a slot", f"{booked['slot']}, {booked['state']}")
    table.add_row("07:52 check in: the code scanned at the desk",
                  f"{held['kind']}, due {held['due']}")
    table.add_row("the board calls", f"a {first['kind']} first (the holder waits for "
                  f"{held['due']})" if first else "nobody due yet")
    table.add_row("my place on the board", f"{place['position']}, about "
                  f"{place['expected_wait_min']:.0f} min")
    table.add_row("08:00 the board calls", f"me, the {mine['kind']}" if mine and
                  mine["card_id"] == card else str(mine))
    table.add_row("my reports", f"{report['title']}: {report['body']}")
    table.add_row("my bill", f"{len(bill['items'])} items, ¥{bill['amount_fen'] / 100:.2f}, "
                  f"{paid['state']} by the phone's wallet")
    console.print(table)
    for c in (term, me, hospital):
        c.close()
    return {"booked": booked["slot"], "kind": held["kind"],
            "called": first["kind"] if first else None, "place": place["position"],
            "me_called": bool(mine and mine["card_id"] == card), "report": report["title"],
            "bill_fen": bill["amount_fen"], "bill": paid["state"]}
