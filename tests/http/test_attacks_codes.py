"""Replays of the code and header attacks of issue 16 over real HTTP (SQLite and
PostgreSQL): each failed before the fix and must be refused, with its own code and
nothing written."""

from __future__ import annotations

import httpx
import orjson
import pytest
from sqlalchemy import select

from services.common.signing import sign_headers
from services.healthcard.tables import cards as ehc_cards
from services.sdk import SdkError, TerminalClient
from tests.http.ehc_refusals import refused

VERIFY = "/ehc/v1/qrcodes/verify"


@pytest.fixture
def card(world):
    person = world.residents.pop()
    return world.app.apply("01", person.id_number, person.name, person.phone)


@pytest.mark.parametrize("pad", ["\n", " ", "\r\n", "\t", "\u3000"])
def test_padding_never_buys_extra_verifications(stack, world, card, pad) -> None:
    """A trailing newline used to slip past ``$`` and be counted as a new code: the limit
    of 3 became 6. Now the padded text is refused, and the limit holds."""
    text = world.app.qrcode(card["card_id"])["qr_text"]
    for _ in range(3):
        world.term_a.verify(text)
    refused("QR_REPLAYED", stack, world.term_a.verify, text)
    refused("QR_MALFORMED", stack, world.term_a.verify, text + pad)
    refused("QR_MALFORMED", stack, world.term_a.verify, pad + text)


def test_fused_code_padding_gives_no_extra_vouchers(stack, world) -> None:
    person = world.residents.pop()
    card = world.app.apply("01", person.id_number, person.name, person.phone)
    essc = world.app.claim_essc("01", person.id_number, person.name)
    world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    text = world.app.qrcode(card["card_id"], kind="fused")["qr_text"]
    ok = 0
    for candidate in (text, text + "\n", text, text + " ", text, text + "\n", text):
        try:
            world.term_a.verify(candidate, step=10105)
            ok += 1
        except SdkError as exc:
            assert exc.code in ("QR_REPLAYED", "QR_MALFORMED")
    assert ok == 3


@pytest.mark.parametrize("ts", ["¹⁷⁶⁴⁰⁰⁰⁰⁰⁰", "١٧٦٤٠٠٠٠٠٠", "17640000０0",
                                "-1", "1e9", ""])
def test_timestamps_of_other_digits_are_stale_not_500(stack, world, card, ts) -> None:
    body = orjson.dumps(world.term_a.verify_body(world.app.qrcode(card["card_id"])["qr_text"]))
    headers = sign_headers(world.term_a.terminal_id, "POST", VERIFY, body,
                           secret=world.term_a.secret)
    headers["X-EHC-Timestamp"] = ts
    raw = [(k.encode(), v.encode("utf-8")) for k, v in headers.items()]
    raw.append((b"content-type", b"application/json"))
    resp = httpx.post(stack.url + VERIFY, content=body, headers=raw)
    assert resp.status_code == 401, resp.text
    assert resp.json()["code"] in ("SIGNATURE_STALE", "SIGNATURE_MISSING")
    answer = resp.json()
    answer.pop("request_id")  # random hex: it may hold "1e9" by chance
    assert ts.strip() == "" or ts not in orjson.dumps(answer).decode()  # not echoed


def test_static_codes_only_from_physical_card_readers(stack, world, card) -> None:
    """``<card ID>:1`` can be built from a card ID alone (IDs are in every answer), so
    hardened mode takes it only from terminals registered to read physical cards."""
    static = card["card_id"] + ":1"
    refused("STATIC_CODE_REFUSED", stack, world.term_a.verify, static)
    assert world.term_b.verify(static)["code_kind"] == "static"


def test_usage_records_hold_only_registered_city_and_type(stack, world, card) -> None:
    text = world.app.qrcode(card["card_id"])["qr_text"]
    a = world.term_a
    for city, kind in (("310000", a.terminal_type), (a.city_code, 1), (a.city_code, 99)):
        liar = TerminalClient(stack.url, a.terminal_id, a.secret, city_code=city,
                              terminal_type=kind)
        try:
            refused("TERMINAL_REGISTRATION_MISMATCH", stack, liar.verify, text)
        finally:
            liar.close()
    assert a.verify(text)["card_id"] == card["card_id"]
    mine = a.usage_records(limit=1000)[-1]
    assert (mine["city_code"], mine["terminal_type"]) == (a.city_code, a.terminal_type)


def test_temporary_card_binds_only_to_a_card_that_verifies(stack, world, card) -> None:
    temp = world.term_a.temporary_card(name="无名氏")
    with stack.app.state.systems["healthcard"].engine.connect() as conn:
        before = conn.execute(select(ehc_cards.c.linked_card_id)
                              .where(ehc_cards.c.card_id == temp["card_id"])).scalar_one()
    assert before is None
    ghost = "A" * 64
    text = world.app.qrcode(card["card_id"])["qr_text"]
    pasted = ghost + text[64:]  # a real block behind a card that does not exist
    for bad, code in ((pasted, "QR_TAMPERED"), (ghost + ":1", "STATIC_CODE_REFUSED")):
        with pytest.raises(SdkError) as info:
            world.term_a.bind_temporary(temp["card_id"], bad)
        assert info.value.code == code
    with pytest.raises(SdkError) as info:  # a reader of physical cards: the card must exist
        world.term_b.bind_temporary(temp["card_id"], ghost + ":1")
    assert info.value.code == "CARD_NOT_FOUND"
    world.term_a.bind_temporary(temp["card_id"], text)
    assert world.term_a.verify(temp["qr_text"])["linked_card_id"] == card["card_id"]


def test_the_signed_query_is_the_one_served(stack, world, card) -> None:
    """The query is part of what an app signs: a refresh signed for a dynamic code and
    sent asking for another kind is refused, while the pairs' order is free (the server
    signs them sorted, from a cache of the queries it has seen)."""
    path = f"/ehc/v1/cards/{card['card_id']}/qrcode"

    def get(signed: str, sent: str) -> httpx.Response:
        headers = sign_headers(world.app.key, "GET", path, b"", signed,
                               secret=world.app.secret)
        return httpx.get(f"{stack.url}{path}?{sent}", headers=headers)

    assert get("kind=dynamic", "kind=dynamic").status_code == 200
    assert get("kind=dynamic&size=1", "size=1&kind=dynamic").status_code == 200
    tampered = get("kind=dynamic", "kind=static")
    assert tampered.status_code == 401 and tampered.json()["code"] == "SIGNATURE_INVALID"
