"""Civil affairs' events, over real HTTP on SQLite and PostgreSQL.

Births: a baby not yet in the registry's residents, without an ID number, gets a card
through its guardian with the birth certificate (the registry's birth event); the card
sits in the guardian's family list and is upgraded in place when the ID number is issued.

Deaths: a registered death cancels the person's cards in both systems (each reads the
registry's feed after its cursor), cancels the visits not yet committed, leaves settled
ones settled, and the person passes no real-name check any more."""

from __future__ import annotations

from datetime import date

import pytest

from services.common.cards.idcard import make_resident_id
from services.sdk import SdkError
from tests.conftest import fused_resident


def refused(code: str, fn, *args) -> None:
    with pytest.raises(SdkError) as info:
        fn(*args)
    assert info.value.code == code, info.value


@pytest.fixture
def guardian(world):
    person = world.residents.pop()
    card = world.app.apply("01", person.id_number, person.name, person.phone)
    return person, card


def test_a_newborn_gets_a_card_through_its_guardian_then_its_id(stack, world,
                                                                guardian) -> None:
    person, card = guardian
    born = date(2026, 11, 20)
    cert = f"Q{abs(hash(card['card_id'])) % 10**9:09d}"
    refused("REALNAME_MISMATCH", world.app.add_newborn, card["card_id"], cert, "小宝", "1",
            born.isoformat())  # no birth registered yet
    world.admin.register_birth(cert, "小宝", "1", born.isoformat(), person.id_number)
    refused("BIRTH_EXISTS", world.admin.register_birth, cert, "小宝", "1",
            born.isoformat(), person.id_number)
    refused("REALNAME_MISMATCH", world.app.add_newborn, card["card_id"], cert, "大宝", "1",
            born.isoformat())  # another name
    baby = world.app.add_newborn(card["card_id"], cert, "小宝", "1", born.isoformat())
    assert baby["id_type"] == "11" and baby["relation"] == "child"
    assert baby["birth_date"] == born.isoformat() and baby["sex"] == "1"
    again = world.app.add_newborn(card["card_id"], cert, "小宝", "1", born.isoformat())
    assert again["card_id"] == baby["card_id"]  # idempotent
    family = world.app.family(card["card_id"])
    assert [m["card_id"] for m in family] == [baby["card_id"]]
    # the baby's code works at the hospital before it has an ID number
    seen = world.term_a.verify(world.app.qrcode(baby["card_id"])["qr_text"])
    assert seen["id_type"] == "11" and seen["id_number"] == cert and seen["name"] == "小宝"
    refused("ID_NOT_ISSUED", world.app.upgrade, baby["card_id"])
    # the ID number is issued: the card is upgraded in place
    number = make_resident_id("330106", born, 7)
    world.admin.issue_id_number(cert, number)
    up = world.app.upgrade(baby["card_id"])
    assert up["card_id"] == baby["card_id"] and up["empi"] == baby["empi"]
    assert up["id_type"] == "01" and up["id_number"].endswith(number[-4:])
    refused("NOT_A_NEWBORN_CARD", world.app.upgrade, baby["card_id"])
    seen = world.term_a.verify(world.app.qrcode(baby["card_id"])["qr_text"])
    assert seen["id_number"] == number and seen["card_id"] == baby["card_id"]
    # applying with the new ID number (and the name) finds the same card
    assert world.app.apply("01", number, "小宝")["card_id"] == baby["card_id"]
    assert world.app.family(card["card_id"])[0]["id_type"] == "01"


def test_newborn_refusals(stack, world, guardian) -> None:
    person, card = guardian
    refused("INVALID_REQUEST", world.app.add_newborn, card["card_id"], "q123", "小宝", "1",
            "2026-11-20")
    refused("INVALID_REQUEST", world.app.add_newborn, card["card_id"], "Q000000001", "小宝",
            "1", "2026-02-30")
    refused("INVALID_REQUEST", world.admin.register_birth, "Q12", "小宝", "1",
            "2026-11-20", person.id_number)
    stranger = make_resident_id("330106", date(1990, 1, 1), 999)
    refused("GUARDIAN_NOT_FOUND", world.admin.register_birth, "Q000000002", "小宝", "1",
            "2026-11-20", stranger)
    refused("BIRTH_NOT_FOUND", world.admin.issue_id_number, "Q000000003",
            make_resident_id("330106", date(2026, 11, 20), 8))
    world.admin.register_birth("Q000000004", "二宝", "2", "2026-11-21", person.id_number)
    refused("INVALID_ID_NUMBER", world.admin.issue_id_number, "Q000000004",
            make_resident_id("330106", date(2026, 11, 22), 8))  # another birth date


def test_a_death_cancels_the_cards_in_both_systems(stack, world) -> None:
    from datetime import datetime

    from services.common.cst import CST

    world.admin.payment_behaviour("success")
    for side in ("ehc", "essc"):  # what earlier tests registered is applied first
        world.admin.pull_deaths(side)
    person, card, essc, voucher = fused_resident(world)
    items = [{"code": "consultation", "category": "A", "amount_fen": 5_000}]
    settled = world.term_a.settle(world.term_a.upload_fees(voucher(), items)["settlement_id"])
    assert settled["state"] == "settled"
    open_visit = world.term_a.upload_fees(voucher(), items)["settlement_id"]
    nobody = make_resident_id("330106", date(1950, 1, 1), 999)
    refused("RESIDENT_NOT_FOUND", world.admin.report_death, nobody, "2026-01-01")
    today = datetime.now(CST).date()
    refused("INVALID_REQUEST", world.admin.report_death, person.id_number,
            date(today.year + 1, 1, 1).isoformat())
    world.admin.report_death(person.id_number, today.isoformat())
    refused("DEATH_ALREADY_REPORTED", world.admin.report_death, person.id_number,
            today.isoformat())
    code = world.app.qrcode(card["card_id"])["qr_text"]  # fetched before the pull
    assert world.admin.pull_deaths("ehc") == 1
    assert world.admin.pull_deaths("essc") == 1
    assert world.admin.pull_deaths("ehc") == world.admin.pull_deaths("essc") == 0  # once
    refused("CARD_CANCELLED", world.term_a.verify, code)
    assert world.app.essc_card(essc["ssc_card_no"])["card_state"] == 9  # cancelled
    refused("SSC_CARD_CANCELLED", world.app.essc_qrcode, essc["ssc_card_no"])
    assert world.term_a.settlement(open_visit)["state"] == "cancelled"
    assert world.term_a.settlement(settled["settlement_id"])["state"] == "settled"
    refused("REALNAME_MISMATCH", world.app.apply, "01", person.id_number, person.name)
    report = world.admin.reconcile_settlements(today.isoformat())
    assert report["clean"], report["differences"]
