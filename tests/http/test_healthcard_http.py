"""EHC card management over real HTTP (uvicorn): issue, codes, verification, refusals."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timedelta

import httpx
import orjson
import pytest
from sqlalchemy import column, insert, select, table

from services.common.cst import utc_now
from services.common.signing import sign_headers
from services.healthcard import qrcodes
from services.healthcard.tables import code_uses
from services.sdk import SdkError, TerminalClient, cst_now_text
from tests.http.ehc_refusals import refused, usage_count
from tests.stack import Kept


@pytest.fixture
def card(world):
    person = world.residents.pop()
    return world.app.apply("01", person.id_number, person.name, person.phone)


def test_apply_code_verify_writes_exactly_one_usage_record(stack, world, card) -> None:
    assert card["created"] is True and card["state"] == 1
    assert len(card["card_id"]) == 64 and card["card_id"] == card["card_id"].upper()
    assert "*" in card["id_number"] and "*" in card["name"]  # masked for the app
    code = world.app.qrcode(card["card_id"])
    assert code["kind"] == "dynamic" and code["refresh_after_s"] == 60
    before = world.term_a.usage_records(limit=1000)
    identity = world.term_a.verify(code["qr_text"], step=10101)
    assert identity["card_id"] == card["card_id"] and identity["empi"] == card["empi"]
    assert "*" not in identity["id_number"]  # the institution gets the full identity
    after = world.term_a.usage_records(limit=1000)
    new = [r for r in after if r not in before]
    assert len(new) == 1 and new[0]["id"] == identity["usage_record_id"]
    assert new[0]["step"] == 10101 and new[0]["terminal_id"] == world.term_a.terminal_id


def _signed_from_the_guide(key: str, secret: str, method: str, path: str, query: str,
                          body: bytes) -> dict[str, str]:
    """A client that never imports the stack: the string built from the engineers'
    guide's rules, SM3 and HMAC-SM3 from the ``openssl`` CLI."""
    import secrets
    import subprocess
    from urllib.parse import quote, unquote_plus

    def form(text: str) -> str:
        return quote(text, safe="-_.~").replace("%20", "+")

    def openssl(data: bytes, *mac: str) -> str:
        out = subprocess.run(["openssl", "dgst", "-sm3", *mac, "-r"], input=data,
                             capture_output=True, check=True).stdout
        return out.split()[0].decode()

    pairs = sorted(tuple(unquote_plus(x) for x in [*p.split("=", 1), ""][:2])
                   for p in query.split("&") if p)
    ts, nonce = str(int(time.time())), secrets.token_urlsafe(18)
    signed = "\n".join((method, path, "&".join(f"{form(k)}={form(v)}" for k, v in pairs),
                        ts, nonce, openssl(body)))
    return {"X-EHC-Key": key, "X-EHC-Timestamp": ts, "X-EHC-Nonce": nonce,
            "X-EHC-Sign-Method": "HMAC-SM3",
            "X-EHC-Signature": openssl(signed.encode(), "-mac", "HMAC", "-macopt",
                                       f"key:{secret}")}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not found")
def test_a_client_signing_from_the_guide_alone_is_served(stack, world, card) -> None:
    """An app's code refresh (a query) and a terminal's verify (a body), each signed by
    the guide's rules with OpenSSL, are served; the same verify with its body changed
    after signing is refused."""
    app, term = world.app, world.term_a
    path, query = f"/ehc/v1/cards/{card['card_id']}/qrcode", "kind=dynamic&x=a%20b"
    got = httpx.get(f"{stack.url}{path}?{query}", headers=_signed_from_the_guide(
        app.key, app.secret, "GET", path, query, b""))
    assert got.status_code == 200, got.text
    body = orjson.dumps(term.verify_body(got.json()["qr_text"]))
    headers = _signed_from_the_guide(term.key, term.secret, "POST",
                                     "/ehc/v1/qrcodes/verify", "", body)
    tampered = httpx.post(f"{stack.url}/ehc/v1/qrcodes/verify", content=body + b" ",
                          headers=headers)
    assert tampered.status_code == 401 and tampered.json()["code"] == "SIGNATURE_INVALID"
    headers = _signed_from_the_guide(term.key, term.secret, "POST",
                                     "/ehc/v1/qrcodes/verify", "", body)
    served = httpx.post(f"{stack.url}/ehc/v1/qrcodes/verify", content=body, headers=headers)
    assert served.status_code == 200, served.text
    assert served.json()["card_id"] == card["card_id"]


def test_reapply_is_idempotent_and_restores_a_cancelled_card(world, card) -> None:
    person_card = world.app.card(card["card_id"])
    again = world.app.apply("01", *_identity(world, card))
    assert again["created"] is False and again["card_id"] == card["card_id"]
    world.app.cancel(card["card_id"])
    assert world.app.card(card["card_id"])["state"] == 3
    restored = world.app.apply("01", *_identity(world, card))
    assert restored["card_id"] == card["card_id"] and restored["state"] == 1
    assert person_card["empi"] == restored["empi"]


def _identity(world, card) -> tuple[str, str]:
    hc_rows = [p for p in _all_people(world) if p.id_number.endswith(card["id_number"][-4:])
               and p.id_number[:4] == card["id_number"][:4]]
    assert hc_rows
    return hc_rows[0].id_number, hc_rows[0].name


def _all_people(world):
    from services.sdk import generate_residents

    return list(generate_residents(40, seed=7))


def test_tampered_code_is_refused(stack, world, card) -> None:
    text = world.app.qrcode(card["card_id"])["qr_text"]
    flipped = text[:-1] + ("0" if text[-1] != "0" else "1")
    refused("QR_TAMPERED", stack, world.term_a.verify, flipped)
    refused("QR_MALFORMED", stack, world.term_a.verify, text + "0")
    refused("QR_MALFORMED", stack, world.term_a.verify, text.lower())


def test_expired_code_is_refused(stack, world, card) -> None:
    hc = stack.app.state.systems["healthcard"]
    key = hc.keystore.active("protection")
    past = datetime.now(qrcodes.CST) - timedelta(seconds=hc.settings.clock_skew_s + 5)
    text = qrcodes.hardened_dynamic_code(card["card_id"], key, past)
    refused("QR_EXPIRED", stack, world.term_a.verify, text)
    far = datetime.now(qrcodes.CST) + timedelta(hours=5)
    refused("QR_TAMPERED", stack, world.term_a.verify,
            qrcodes.hardened_dynamic_code(card["card_id"], key, far))


def test_replay_beyond_the_limit_is_refused(stack, world, card) -> None:
    text = world.app.qrcode(card["card_id"])["qr_text"]
    limit = stack.settings.max_verifications_per_code
    for _ in range(limit):
        world.term_a.verify(text)
    refused("QR_REPLAYED", stack, world.term_a.verify, text)
    refused("QR_REPLAYED", stack, world.term_b.verify, text)
    hc = stack.app.state.systems["healthcard"]
    with hc.engine.connect() as conn:
        uses = conn.execute(select(code_uses.c.uses)
                            .where(code_uses.c.card_id == card["card_id"])).scalar_one()
    assert uses == limit


def test_lost_and_cancelled_cards_are_refused(stack, world, card) -> None:
    text = world.app.qrcode(card["card_id"])["qr_text"]
    static = world.app.qrcode(card["card_id"], kind="static")["qr_text"]
    world.app.report_lost(card["card_id"])
    refused("CARD_LOST", stack, world.term_a.verify, text)
    refused("STATIC_CODE_REFUSED", stack, world.term_a.verify, static)  # no card reader
    refused("CARD_LOST", stack, world.term_b.verify, static)
    with pytest.raises(SdkError) as info:
        world.app.qrcode(card["card_id"])
    assert info.value.code == "CARD_LOST"
    world.app.unlock(card["card_id"])
    world.term_b.verify(static)
    world.app.cancel(card["card_id"])
    refused("CARD_CANCELLED", stack, world.term_a.verify, text)
    with pytest.raises(SdkError) as info:
        world.app.unlock(card["card_id"])
    assert info.value.code == "CARD_STATE_CONFLICT"


def test_wrong_terminal_unsigned_stale_and_replayed_requests(stack, world, card) -> None:
    text = world.app.qrcode(card["card_id"])["qr_text"]
    # terminal B signs a body that names terminal A
    body = world.term_a.verify_body(text)
    refused("TERMINAL_MISMATCH", stack, world.term_b.request, "POST",
            "/ehc/v1/qrcodes/verify", body)
    raw = orjson.dumps(body)
    path = "/ehc/v1/qrcodes/verify"
    with httpx.Client(base_url=stack.url) as http:
        def post(headers: dict) -> httpx.Response:
            before = usage_count(stack)
            resp = http.post(path, content=raw, headers=headers)
            assert usage_count(stack) == before
            return resp

        unsigned = post({}).json()
        assert unsigned["code"] == "UNKNOWN_TERMINAL"
        assert "no X-EHC-Key header (is it signed?)" in unsigned["message"]
        assert post({"X-EHC-Key": "T-NOBODY"}).json()["message"] == \
            "terminal is not registered or disabled"
        assert post({"X-EHC-Key": world.term_a.terminal_id}).json()["code"] == \
            "SIGNATURE_MISSING"
        stale = sign_headers(world.term_a.terminal_id, "POST", path, raw,
                             secret=world.term_a.secret, timestamp=int(time.time()) - 3600)
        assert post(stale).json()["code"] == "SIGNATURE_STALE"
        wrong = sign_headers(world.term_a.terminal_id, "POST", path, raw, secret="not-it")
        assert post(wrong).json()["code"] == "SIGNATURE_INVALID"
        other_body = sign_headers(world.term_a.terminal_id, "POST", path, raw + b" ",
                                  secret=world.term_a.secret)
        assert post(other_body).json()["code"] == "SIGNATURE_INVALID"
        good = sign_headers(world.term_a.terminal_id, "POST", path, raw,
                            secret=world.term_a.secret)
        ok = http.post(path, content=raw, headers=good)
        assert ok.status_code == 200, ok.text
        again = post(good)
        assert again.status_code == 401 and again.json()["code"] == "SIGNATURE_REPLAYED"
        assert again.json()["request_id"]
        # the fast path's answers, served and refused, say their length (no chunks)
        for answer in (ok, again, http.get("/healthz")):
            assert answer.headers["content-length"] == str(len(answer.content))
            assert "transfer-encoding" not in answer.headers


def test_a_refused_scan_burns_its_nonce_and_counts_nothing(stack, world) -> None:
    """A scan refused past its signature (a lost card) leaves its nonce written, so the
    same signed request is then SIGNATURE_REPLAYED, and neither a count of its code nor
    a usage record: the same writes on SQLite (statement by statement) and on PostgreSQL
    (the checks and their guarded writes in one statement)."""
    p = world.residents.pop()
    card = world.app.apply("01", p.id_number, p.name)
    text = world.app.qrcode(card["card_id"])["qr_text"]
    world.app.report_lost(card["card_id"])
    raw = orjson.dumps(world.term_a.verify_body(text))
    path = "/ehc/v1/qrcodes/verify"
    signed = {**sign_headers(world.term_a.terminal_id, "POST", path, raw,
                             secret=world.term_a.secret), "Content-Type": "application/json"}
    hc = stack.app.state.systems["healthcard"]

    def counted() -> int:
        with hc.engine.connect() as conn:
            return len(conn.execute(select(code_uses.c.uses).where(
                code_uses.c.card_id == card["card_id"])).all())

    before = usage_count(stack)
    with httpx.Client(base_url=stack.url) as http:
        first = http.post(path, content=raw, headers=signed)
        assert (first.status_code, first.json()["code"]) == (403, "CARD_LOST")
        again = http.post(path, content=raw, headers=signed)
        assert (again.status_code, again.json()["code"]) == (401, "SIGNATURE_REPLAYED")
    assert counted() == 0 and usage_count(stack) == before


def test_clock_skew_and_bad_fields_are_refused(stack, world, card) -> None:
    text = world.app.qrcode(card["card_id"])["qr_text"]
    late = (datetime.now(qrcodes.CST) + timedelta(minutes=10)).strftime("%Y%m%d%H%M%S")
    refused("CLOCK_SKEW", stack, world.term_a.verify, text, time=late)
    body = world.term_a.verify_body(text)
    for field, value in (("step", 99999), ("terminal_type", 3), ("qr_text", 5),
                         ("time", "2026-01-01"), ("city_code", "")):
        bad = {**body, field: value}
        refused("INVALID_REQUEST", stack, world.term_a.request, "POST",
                "/ehc/v1/qrcodes/verify", bad)


def test_national_block_pasted_behind_another_card_is_refused(stack, world) -> None:
    a = world.residents.pop()
    b = world.residents.pop()
    card_a = world.app.apply("01", a.id_number, a.name)
    card_b = world.app.apply("01", b.id_number, b.name)
    hc = stack.app.state.systems["healthcard"]
    key = hc.keystore.active("protection")
    expiry = datetime.now(qrcodes.CST) + timedelta(seconds=60)
    national_a = qrcodes.national_dynamic_code(card_a["card_id"], key, expiry)
    pasted = card_b["card_id"] + national_a[64:]
    refused("QR_FORMAT_NOT_ACCEPTED", stack, world.term_a.verify, pasted)
    hardened_a = world.app.qrcode(card_a["card_id"])["qr_text"]
    refused("QR_TAMPERED", stack, world.term_a.verify, card_b["card_id"] + hardened_a[64:])


def test_static_code_and_identity_answer(world, card) -> None:
    static = world.app.qrcode(card["card_id"], kind="static")["qr_text"]
    assert static == card["card_id"] + ":1"
    for _ in range(5):  # static codes carry no replay limit
        assert world.term_b.verify(static, step=10103)["code_kind"] == "static"


def test_institution_sees_only_its_own_usage_records(world, card) -> None:
    code = world.app.qrcode(card["card_id"])["qr_text"]
    rec = world.term_b.verify(code, step=10105)["usage_record_id"]
    assert any(r["id"] == rec for r in world.term_b.usage_records(limit=1000))
    assert all(r["id"] != rec for r in world.term_a.usage_records(limit=1000))
    assert all(r["institution_code"] == world.term_a.institution_code
               for r in world.term_a.usage_records(limit=1000))


def test_realname_and_id_number_checks(world) -> None:
    p = world.residents.pop()
    with pytest.raises(SdkError) as info:
        world.app.apply("01", p.id_number, p.name + "伪")
    assert info.value.code == "REALNAME_MISMATCH"
    bad_check = p.id_number[:17] + ("0" if p.id_number[17] != "0" else "1")
    with pytest.raises(SdkError) as info:
        world.app.apply("01", bad_check, p.name)
    assert info.value.code == "INVALID_ID_NUMBER"
    with pytest.raises(SdkError) as info:  # valid number, not in the registry: same answer
        world.app.apply("01", "11010020171225006X", "张三")
    assert info.value.code == "REALNAME_MISMATCH"


def test_other_apps_cannot_see_a_card(stack, world, card) -> None:
    from services.sdk import ChannelClient

    cred = world.admin.add_channel_app("other app")
    other = ChannelClient(stack.url, cred["app_key"], cred["app_secret"])
    with pytest.raises(SdkError) as info:
        other.card(card["card_id"])
    assert info.value.code == "CARD_NOT_FOUND"
    with pytest.raises(SdkError) as info:
        other.qrcode(card["card_id"])
    assert info.value.code == "CARD_NOT_FOUND"


def test_key_rotation_old_codes_verify_until_retired(stack, world, card) -> None:
    old = world.app.qrcode(card["card_id"])["qr_text"]
    new_id = world.admin.rotate_key("protection")
    new = world.app.qrcode(card["card_id"])["qr_text"]
    assert old[67:69] != new[67:69]  # the key version byte moved on
    world.term_a.verify(old)
    world.term_a.verify(new)
    old_id = next(k["key_id"] for k in world.admin.list_keys()
                  if k["purpose"] == "protection" and k["state"] == "retiring")
    world.admin.retire_key(old_id)
    refused("QR_TAMPERED", stack, world.term_a.verify, old)
    world.term_a.verify(new)
    with pytest.raises(SdkError) as info:
        world.admin.retire_key(new_id)
    assert info.value.code == "KEY_ACTIVE"
    assert all("material" not in k and "wrapped" not in k for k in world.admin.list_keys())


def test_temporary_card_verify_and_bind(world, card) -> None:
    temp = world.term_a.temporary_card(name="无名氏")
    assert temp["qr_text"].endswith(":9")
    ident = world.term_a.verify(temp["qr_text"], step=10101)
    assert ident["temporary"] is True and ident["code_kind"] == "temporary"
    static = world.app.qrcode(card["card_id"], kind="static")["qr_text"]
    with pytest.raises(SdkError) as info:  # only the issuing institution may bind it
        world.term_b.bind_temporary(temp["card_id"], static)
    assert info.value.code == "TEMP_CARD_NOT_FOUND"
    # only through a code that verifies: not a made-up card, not a tampered block
    for bad, code in ((card["card_id"][:-1] + "0:1", "STATIC_CODE_REFUSED"),
                      ("F" * 64 + ":0:" + "0" * 66, "QR_TAMPERED")):
        with pytest.raises(SdkError) as info:
            world.term_a.bind_temporary(temp["card_id"], bad)
        assert info.value.code == code
    world.term_a.bind_temporary(temp["card_id"], world.app.qrcode(card["card_id"])["qr_text"])
    assert world.term_a.verify(temp["qr_text"])["linked_card_id"] == card["card_id"]
    # a temporary ID under the card marker is not a card
    with pytest.raises(SdkError) as info:
        world.term_b.verify(temp["card_id"] + ":1")
    assert info.value.code == "CARD_NOT_FOUND"


def test_patient_links_family_and_rendering(world, card) -> None:
    world.term_a.link_patient("MRN-0001", card["card_id"])
    world.term_a.link_patient("MRN-0001", card["card_id"])  # idempotent
    assert world.term_a.linked_card("MRN-0001") == card["card_id"]
    with pytest.raises(SdkError) as info:
        world.term_b.linked_card("MRN-0001")
    assert info.value.code == "PATIENT_LINK_NOT_FOUND"
    with pytest.raises(SdkError) as info:
        world.term_a.link_patient("MRN-0002", card["card_id"])
    assert info.value.code == "PATIENT_LINK_CONFLICT"

    kid = world.residents.pop()
    member = world.app.add_family(card["card_id"], "01", kid.id_number, kid.name, "child")
    assert [m["card_id"] for m in world.app.family(card["card_id"])] == [member["card_id"]]
    world.app.remove_family(card["card_id"], member["card_id"])
    assert world.app.family(card["card_id"]) == []

    png = world.app.qrcode_image(card["card_id"], "static", "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    svg = world.app.qrcode_image(card["card_id"], "dynamic", "svg")
    assert b"<svg" in svg


def test_server_time_and_modify(world, card) -> None:
    t = world.term_a.server_time()
    assert abs(datetime.strptime(t["time"], "%Y%m%d%H%M%S")
               - datetime.strptime(cst_now_text(), "%Y%m%d%H%M%S")) < timedelta(seconds=5)
    changed = world.app.modify(card["card_id"], phone="13912345678")
    assert changed["phone"] == "139****5678"
    with pytest.raises(SdkError) as info:
        world.app.modify(card["card_id"], name="冒名")
    assert info.value.code == "REALNAME_MISMATCH"


def test_sm2_signed_terminal(stack, world, card) -> None:
    from services.common.crypto import sm2_generate_keypair

    sk, pk = sm2_generate_keypair()
    code = "33019" + f"{int(time.time() * 1000) % 10**7:07d}"
    world.admin.add_institution(code, "SM2 hospital", "330100", sm2_public_key=pk)
    cred = world.admin.add_terminal(code, "0201", 1)
    term = TerminalClient(stack.url, cred["terminal_id"], None, sm2_private_hex=sk,
                          city_code="330100")
    text = world.app.qrcode(card["card_id"])["qr_text"]
    assert term.verify(text)["card_id"] == card["card_id"]
    other_sk, _ = sm2_generate_keypair()
    forger = TerminalClient(stack.url, cred["terminal_id"], None, sm2_private_hex=other_sk,
                            city_code="330100")
    refused("SIGNATURE_INVALID", stack, forger.verify, text)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rate_limit_per_terminal(tmp_path_factory, backend: str) -> None:
    """A terminal over its rate gets 429 RATE_LIMITED with Retry-After; nothing written;
    another terminal is not affected (on PostgreSQL the count and the nonce are one
    statement with the scan's checks)."""
    from tests.conftest import seeded_world
    from tests.stack import backend_env, drop_schemas, make_test_settings, start_stack

    backend_env(backend)  # skips PostgreSQL where it is not configured
    settings = make_test_settings(tmp_path_factory.mktemp("rl"), backend,
                                  rate_limit_terminal_per_s=2.0)
    stack = start_stack(settings)
    try:
        w = seeded_world(stack, residents=3)
        p = w.residents.pop()
        card = w.app.apply("01", p.id_number, p.name)
        static = w.app.qrcode(card["card_id"], kind="static")["qr_text"]
        codes: list[int | str] = []
        for _ in range(8):
            try:
                w.term_b.verify(static)
                codes.append(200)
            except SdkError as exc:
                codes.append(exc.code)
        assert codes[:4] == [200] * 4 and "RATE_LIMITED" in codes, codes  # 2 s x 2/s
        raw = orjson.dumps(w.term_b.verify_body(static))
        resp = httpx.post(stack.url + "/ehc/v1/qrcodes/verify", content=raw, headers={
            **sign_headers(w.term_b.terminal_id, "POST", "/ehc/v1/qrcodes/verify", raw,
                           secret=w.term_b.secret), "Content-Type": "application/json"})
        assert resp.status_code == 429 and resp.headers["retry-after"] in ("1", "2")
        # the words of every signed route's refusal (signing.refuse_wait)
        assert resp.json()["message"] == "more than 2 requests a second", resp.text
        w.term_a.verify(w.app.qrcode(card["card_id"])["qr_text"])  # its own bucket
        time.sleep(float(resp.headers["retry-after"]) + 0.1)  # then count what the
        # refused requests left: nothing
        assert len(w.term_b.usage_records(limit=100)) == codes.count(200)
        # each terminal's rate is one row (its paced bucket), however many requests
        with stack.app.state.systems["healthcard"].engine.connect() as conn:
            paces = conn.exec_driver_sql(
                "SELECT token FROM shared_paces").scalars().all()
        assert {f"pace:rate:{t.terminal_id}" for t in (w.term_a, w.term_b)} <= set(paces)
    finally:
        stack.stop()
        drop_schemas(settings)


def test_nonces_and_spent_code_counts_are_swept(stack, world, card) -> None:
    """A signed request's nonce is a row of ``shared_nonces`` (none in ``shared_events``,
    which keeps the login throttles' hits; the rate buckets are ``shared_paces``); the
    hot path's sweep, every half minute, drops the expired ones and keeps the rest. So
    for the dynamic codes' use counts: a count goes once its code can no longer pass the
    expiry check (its expiry plus the clock skew past), not before (a code used up must
    stay refused while it could be presented)."""
    hc = stack.app.state.systems["healthcard"]
    now, utc = time.time(), utc_now()  # the store's naive UTC
    skew = timedelta(seconds=hc.settings.clock_skew_s)
    with hc.engine.begin() as conn:
        conn.execute(insert(table("shared_nonces", column("token"), column("expires_at"))),
                     [{"token": "nonce:old", "expires_at": now - 1},
                      {"token": "nonce:fresh", "expires_at": now + 600}])
        conn.execute(insert(code_uses), [
            {"code_digest": b"spent".ljust(16, b"\0"), "card_id": "C", "uses": 1,
             "expires_at": utc - skew - timedelta(seconds=5)},
            {"code_digest": b"in skew".ljust(16, b"\0"), "card_id": "C", "uses": 1,
             "expires_at": utc - skew + timedelta(seconds=20)}])
    hc.verifier.sweep.next_pass = 0.0  # the next scan sweeps (PostgreSQL: beside it)
    world.term_a.verify(world.app.qrcode(card["card_id"])["qr_text"])
    sweeping, deadline = hc.verifier._sweeping, time.monotonic() + 5
    while sweeping is not None and not sweeping.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    with hc.engine.connect() as conn:
        nonces = set(conn.exec_driver_sql("SELECT token FROM shared_nonces").scalars())
        stray = conn.exec_driver_sql("SELECT count(*) FROM shared_events WHERE token "
                                     "LIKE 'nonce:%%' OR token LIKE 'pace:%%'").scalar_one()
        counted = {bytes(d).rstrip(b"\0") for d in conn.execute(select(
            code_uses.c.code_digest).where(code_uses.c.card_id == "C")).scalars()}
    assert "nonce:old" not in nonces and "nonce:fresh" in nonces, nonces
    assert any(t.startswith(f"nonce:{world.term_a.terminal_id}:") for t in nonces)
    assert stray == 0
    assert counted == {b"in skew"}, counted
    # a nonce is kept until its signed timestamp is stale, and a minute's slack for a
    # server whose clock runs behind: a request signed 100 s ago, 100 s less
    term, path = world.term_a, "/ehc/v1/qrcodes/verify"
    raw = orjson.dumps(term.verify_body(world.app.qrcode(card["card_id"])["qr_text"]))
    headers = sign_headers(term.terminal_id, "POST", path, raw, secret=term.secret,
                           timestamp=int(now) - 100)
    assert httpx.post(stack.url + path, content=raw, headers={
        **headers, "Content-Type": "application/json"}).status_code == 200
    with hc.engine.connect() as conn:
        kept_until = conn.exec_driver_sql(
            "SELECT expires_at FROM shared_nonces WHERE token = "
            f"'nonce:{term.terminal_id}:{headers['X-EHC-Nonce']}'").scalar_one()
    assert kept_until == int(now) - 100 + hc.settings.signature_max_age_s + 60


def test_input_a_store_cannot_hold_is_refused_on_both_backends(stack, world, card) -> None:
    """The longest name the models accept fits its column (4-byte characters too, on
    PostgreSQL, which enforces lengths), and a NUL character is refused with 422 before
    any store sees it."""
    for name in ("张" * 64, "😀" * 64):
        temp = world.term_a.temporary_card(name=name)
        assert len(temp["card_id"]) == 64
    with pytest.raises(SdkError) as info:
        world.term_a.link_patient("MRN\x00-1", card["card_id"])
    assert info.value.status == 422 and info.value.code == "INVALID_REQUEST"
    code = world.app.qrcode(card["card_id"])["qr_text"]
    body = world.term_a.verify_body(code)
    body["city_code"] = "3301\x000"
    with pytest.raises(SdkError) as info:
        world.term_a.request("POST", "/ehc/v1/qrcodes/verify", body)
    assert info.value.status == 422 and "NUL" in info.value.message
    # in a query parameter, which no model checks: PostgreSQL refuses it (a 500 before,
    # found by the schema fuzz on PostgreSQL), SQLite keeps it as any other character
    seen = Kept()
    logging.getLogger("ehc.errors").addHandler(seen)
    try:
        answer = httpx.get(f"{stack.url}/ehc/v1/peer/bindings", params={"after": "\x00x"},
                           headers={"Authorization": f"Bearer {stack.admin_token}"})
    finally:
        logging.getLogger("ehc.errors").removeHandler(seen)
    if stack.settings.database_url:
        assert answer.status_code == 422 and answer.json()["code"] == "INVALID_REQUEST"
        assert "NUL" in answer.json()["message"]
        # the server's warning names the request the client was told of
        assert [r.__dict__.get("request_id") for r in seen.records
                if "refused a value" in r.getMessage()] == [answer.json()["request_id"]]
    else:
        assert answer.status_code == 200


def test_the_code_refresh_on_the_fast_path_checks_as_the_framework(stack, world,
                                                                    card) -> None:
    """JSON codes come from the fast path (the scans' batch funnel counts them), images
    and bad queries from the framework; both give the same codes and refusals; a
    replayed signed refresh is refused, as is another app's or a lost card's."""
    app, cid = world.app, card["card_id"]
    funnel = stack.app.state.systems["healthcard"].verifier.funnel
    before = funnel.items
    code = app.qrcode(cid)
    assert funnel.items == before + 1  # served below the framework, in the batch
    text = code["qr_text"]
    assert code["kind"] == "dynamic" and code["refresh_after_s"] > 0
    assert world.term_a.verify(text)["card_id"] == cid  # a working code
    assert app.qrcode(cid, kind="static")["kind"] == "static"
    before = funnel.items
    assert app.qrcode_image(cid, fmt="png")[:4] == b"\x89PNG"  # the framework's
    assert funnel.items == before
    path = f"/ehc/v1/cards/{cid}/qrcode"
    with httpx.Client(base_url=stack.url) as http:
        bad = http.get(path, params={"kind": "weird"},
                       headers=sign_headers(app.key, "GET", path, b"", "kind=weird",
                                            secret=app.secret))
        assert bad.status_code == 422 and bad.json()["code"] == "INVALID_REQUEST"
        good = sign_headers(app.key, "GET", path, b"", "kind=dynamic", secret=app.secret)
        assert http.get(path, params={"kind": "dynamic"}, headers=good).status_code == 200
        again = http.get(path, params={"kind": "dynamic"}, headers=good)
        assert again.status_code == 401 and again.json()["code"] == "SIGNATURE_REPLAYED"
        unsigned = http.get(path).json()
        assert unsigned["code"] == "UNKNOWN_APP" and "no channel app named" in unsigned["message"]
    for kind in ("dynamic", "fused"):
        with pytest.raises(SdkError) as info:
            app.qrcode("F" * 64, kind=kind)
        assert (info.value.status, info.value.code) == (404, "CARD_NOT_FOUND")
    with pytest.raises(SdkError) as info:
        app.qrcode(cid, kind="fused")  # not bound
    assert info.value.code == "BINDING_NOT_FOUND"
    app.report_lost(cid)
    with pytest.raises(SdkError) as info:
        app.qrcode(cid)
    assert (info.value.status, info.value.code) == (403, "CARD_LOST")
    app.unlock(cid)
