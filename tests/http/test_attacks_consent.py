"""Consent between apps (issue 16), over real HTTP on SQLite and PostgreSQL. Before: any
registered app could ``apply("01", victim_id, victim_name)`` and take the card over
(codes answering the victim's identity, phone changes, lost reports, the e-SSC and its
settlements). Now only the resident's grant at the unified entry lets another app in."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.healthcard.tables import card_apps as ehc_holders
from services.healthcard.tables import cards as ehc_cards
from services.sdk import ChannelClient, ResidentClient, SdkError
from services.socialcard.tables import card_apps as essc_holders
from tests.http.ehc_refusals import refusal_check


def holders(stack) -> tuple[int, int]:
    counts = []
    for system, table in (("healthcard", ehc_holders), ("socialcard", essc_holders)):
        with stack.app.state.systems[system].engine.connect() as conn:
            counts.append(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return counts[0], counts[1]


refused = refusal_check(holders)


@pytest.fixture(scope="module")
def hostile(stack, world):
    cred = world.admin.add_shared_app("a hostile app")  # registered, not a strong entry
    app = ChannelClient(stack.url, cred["app_key"], cred["app_secret"])
    yield app
    app.close()


@pytest.fixture
def resident(stack, world):
    """A resident logged in at the unified entry (SMS code) with both cards claimed."""
    person = world.residents.pop()
    client = ResidentClient(stack.url)
    client.log_in_reading_sms(person.id_number, person.name, person.phone, world.admin)
    claimed = client.claim()
    yield person, client, claimed
    client.close()


def test_applying_with_id_and_name_never_hands_a_card_over(stack, world, hostile,
                                                           resident) -> None:
    person, _, claimed = resident
    card_id = claimed["ehc"]["card_id"]
    refused("CONSENT_REQUIRED", stack, hostile.apply, "01", person.id_number, person.name)
    refused("CONSENT_REQUIRED", stack, hostile.claim_essc, "01", person.id_number,
            person.name)
    for attempt in (lambda: hostile.card(card_id), lambda: hostile.qrcode(card_id),
                    lambda: hostile.report_lost(card_id),
                    lambda: hostile.lookup("01", person.id_number)):
        refused("CARD_NOT_FOUND", stack, attempt)
    ssc = claimed["essc"]["ssc_card_no"]
    refused("SSC_CARD_NOT_FOUND", stack, hostile.request, "GET",
            f"/essc/v1/cards/{ssc}/settlements")
    # nor by adding the victim as "family"
    own = world.residents.pop()
    mine = hostile.apply("01", own.id_number, own.name)  # a card it opens is its own
    refused("CONSENT_REQUIRED", stack, hostile.add_family, mine["card_id"], "01",
            person.id_number, person.name, "child")
    with stack.app.state.systems["healthcard"].engine.connect() as conn:
        state = conn.execute(select(ehc_cards.c.state)
                             .where(ehc_cards.c.card_id == card_id)).scalar_one()
    assert state == 1


def test_a_grant_lets_one_app_in_with_its_scope_until_revoked(stack, world, hostile,
                                                             resident) -> None:
    _, client, claimed = resident
    card_id, ssc = claimed["ehc"]["card_id"], claimed["essc"]["ssc_card_no"]
    codes = client.grant(hostile.key, "codes")
    assert codes["ehc"]["scope"] == "codes" and codes["essc"]["app_key"] == hostile.key
    # the code is for this app only, and works once
    other = world.admin.add_shared_app("another app")
    with ChannelClient(stack.url, other["app_key"], other["app_secret"]) as third:
        refused("GRANT_CODE_INVALID", stack, third.exchange_grant, codes["ehc"]["code"])
    assert hostile.exchange_grant(codes["ehc"]["code"]) == {"card_id": card_id,
                                                             "scope": "codes"}
    refused("GRANT_CODE_INVALID", stack, hostile.exchange_grant, codes["ehc"]["code"])
    assert hostile.exchange_grant(codes["essc"]["code"], "essc")["ssc_card_no"] == ssc
    assert hostile.qrcode(card_id)["kind"] == "dynamic"
    assert hostile.request("GET", f"/essc/v1/cards/{ssc}/settlements") == []
    # the codes scope does not change the card
    refused("SCOPE_INSUFFICIENT", stack, hostile.report_lost, card_id)
    refused("SCOPE_INSUFFICIENT", stack, hostile.modify, card_id, phone="13900000000")
    listed = client.grants()
    assert [g["app_key"] for g in listed["ehc"]] == [hostile.key]
    assert listed["essc"][0]["scope"] == "codes"
    client.revoke(hostile.key)
    refused("CARD_NOT_FOUND", stack, hostile.qrcode, card_id)
    refused("SSC_CARD_NOT_FOUND", stack, hostile.request, "GET", f"/essc/v1/cards/{ssc}")
    with pytest.raises(SdkError) as info:
        client.revoke(hostile.key)
    assert info.value.code == "GRANT_NOT_FOUND"


def test_only_the_strong_entry_manages_grants(stack, world, hostile) -> None:
    own = world.residents.pop()
    mine = hostile.apply("01", own.id_number, own.name)
    for call in (lambda: hostile.request("POST", f"/ehc/v1/cards/{mine['card_id']}/grants",
                                         {"app_key": hostile.key, "scope": "manage"}),
                 lambda: hostile.request("GET", f"/ehc/v1/cards/{mine['card_id']}/grants")):
        refused("CONSENT_ENTRY_ONLY", stack, call)


def test_an_unknown_or_expired_code_gives_one_answer(stack, hostile) -> None:
    for code in ("x" * 32, "A" * 16):
        refused("GRANT_CODE_INVALID", stack, hostile.exchange_grant, code)
