"""The fusion part of ``make run``: one resident through the unified entry (log in, claim,
bind, show the one code), a hospital scan that answers both identities, the same scan
with the e-SSC side down (fail soft), auto-opening for every other e-SSC holder, shared
usage records, reconciliation, and the bindings the network refuses."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from ..rules.codes import Step
from .clients import (
    AdminClient,
    ChannelClient,
    ResidentClient,
    SdkError,
    TerminalClient,
    cst_today_text,
)
from .fusion_job import fuse_all
from .seeding import insured_record
from .synthetic import generate_residents

VISIT = [{"code": "consultation", "category": "A", "amount_fen": 5_000},
         {"code": "drugs", "category": "A", "amount_fen": 245_000},
         {"code": "CT scan", "category": "B", "amount_fen": 60_000},
         {"code": "private room", "category": "C", "amount_fen": 20_000}]


def run_fusion(url: str, admin: AdminClient, seed: dict[str, Any], console: Console) -> dict:
    inst = seed["institutions"][0]
    t = inst["terminals"][0]
    term = TerminalClient(url, t["terminal_id"], t["secret"], city_code=inst["city_code"],
                          institution_name=inst["name"])
    # residents who are insured but never had an EHC: auto-opening will give them one
    newcomers = list(generate_residents(120, seed=77_777))
    admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name,
                          "phone": p.phone} for p in newcomers])
    admin.add_insured([insured_record(p, 88_000_001 + i) for i, p in enumerate(newcomers)])
    person = newcomers[0]
    with ResidentClient(url) as resident:
        resident.log_in_reading_sms(person.id_number, person.name, person.phone, admin)
        resident.claim()
        bound = resident.bind()
        code = resident.code()
        answer = term.verify(code["qr_text"], step=Step.PAYMENT)
        visit = term.upload_fees(answer["essc"]["ec_token"], VISIT)
        settled = term.settle(visit["settlement_id"])
        admin.set_faults(unavailable=True)
        degraded = term.verify(resident.code()["qr_text"])
        admin.set_faults()
    table = Table(title="One resident, one code (through the unified entry, /channel/)")
    table.add_column("step")
    table.add_column("what the network answered")
    table.add_row("log in (SMS code), claim, bind",
                  f"binding v{bound['version']} {bound['state']}, signed by both systems "
                  "(SM2) and held by both")
    table.add_row("code shown", f"{code['kind']} code, refreshes every "
                  f"{code['refresh_after_s']} s")
    table.add_row("hospital scan (payment step)",
                  f"EHC {answer['card_id'][:12]}… + e-SSC {answer['essc']['ssc_card_no']} "
                  f"region {answer['essc']['region']} type {answer['essc']['insurance_type']}, "
                  f"voucher {answer['essc']['ec_token'][:10]}…")
    table.add_row("settlement (fees 3,300 yuan)",
                  f"{settled['state']}: fund {settled['fund_fen'] / 100:.2f}, personal "
                  f"account {settled['account_fen'] / 100:.2f}, cash through the payment "
                  f"gateway {settled['cash_fen'] / 100:.2f} yuan ({settled['policy']})")
    table.add_row("same scan, e-SSC system down",
                  f"EHC identity answered, partial={degraded['partial']} "
                  f"({degraded['partial_reason']})")
    console.print(table)
    time.sleep(1.2)  # usage records are shared once they are a second old
    shared = {"to e-SSC": admin.pull_usage("essc"), "to EHC": admin.pull_usage("ehc")}
    refusals = _refused_bindings(url, seed, newcomers, bound["ehc_card_id"], console)
    totals = fuse_all(admin, admin, page=500)
    report = admin.reconcile_bindings()
    stats = admin.essc_stats()
    console.print(f"[bold]ehc fuse --all[/]: {totals['holders']:,} e-SSC holders, "
                  f"{totals['opened']:,} EHCs opened, {totals['bound']:,} bound, "
                  f"{totals['refused']:,} refused; bindings now {stats['bindings_by_state']}")
    money = admin.reconcile_settlements(cst_today_text())
    console.print(f"usage records of bound cards shared: {shared['to e-SSC']} to the e-SSC "
                  f"side, {shared['to EHC']} to the EHC side; reconcile bindings: "
                  + ("both sides agree" if report["clean"] else str(report))
                  + "; reconcile settlements: "
                  + ("clean" if money["clean"] else str(money["differences"])))
    term.close()
    return {"fused_scan": answer["partial"] is False, "fail_soft": degraded["partial"],
            "settled": settled["state"], "fuse": totals, "shared": shared,
            "reconcile_clean": report["clean"] and money["clean"], "refusals": refusals}


def _refused_bindings(url: str, seed: dict, people: list, bound_card: str,
                      console: Console) -> dict[str, str]:
    cred = seed["channel_apps"][0]
    app = ChannelClient(url, cred["app_key"], cred["app_secret"])
    a, b = people[1], people[2]
    card_a = app.apply("01", a.id_number, a.name)
    essc_b = app.claim_essc("01", b.id_number, b.name)
    app.apply("01", people[0].id_number, people[0].name)  # this app holds it too
    cases = {
        "bind someone else's e-SSC": lambda: app.bind(card_a["card_id"], essc_b["ssc_card_no"],
                                                      essc_b["region"]),
        "bind a second e-SSC to a bound card": lambda: app.bind(
            bound_card, essc_b["ssc_card_no"], essc_b["region"]),
        "a forged binding signature": lambda: _forged(url, seed, card_a, essc_b),
        "fused code after unbinding": lambda: _fused_after_unbind(app, bound_card, seed, url),
    }
    out = refusal_table("Bindings the network refuses (nothing stored on either side)",
                        cases, console)
    app.close()
    return out


def _forged(url: str, seed: dict, card: dict, essc: dict) -> None:
    """A binding record signed with a key that is not the EHC system's, sent to the
    e-SSC system's countersigning route (as a compromised peer would)."""
    from ..common.cards import binding
    from ..common.crypto import sm2_generate_keypair

    record = binding.make_record(card["card_id"], card["empi"], essc["ssc_card_no"],
                                 essc["region"], "bound", 1)
    batch = binding.sign_batch("ehc", sm2_generate_keypair()[0], [record])
    with AdminClient(url, seed["admin_token"]) as peer:
        peer.request("POST", "/essc/v1/peer/bindings:batch", {
            "records": [record], "ehc": batch.to_json(), "identities": [None]})


def _fused_after_unbind(app: ChannelClient, card_id: str, seed: dict, url: str) -> None:
    inst = seed["institutions"][1]
    t = inst["terminals"][0]
    code = app.qrcode(card_id, kind="fused")["qr_text"]
    app.unbind(card_id)
    with TerminalClient(url, t["terminal_id"], t["secret"],
                        city_code=inst["city_code"]) as term:
        term.verify(code)


def refusal_table(title: str, cases: dict, console: Console) -> dict[str, str]:
    """Try each attempt, expect a refusal, and print what the network answered."""
    table = Table(title=title)
    table.add_column("attempt")
    table.add_column("answer")
    out = {}
    for name, attempt in cases.items():
        try:
            attempt()
            out[name] = "ACCEPTED (unexpected)"
        except SdkError as exc:
            out[name] = f"{exc.status} {exc.code}"
        table.add_row(name, out[name])
    console.print(table)
    return out
