"""Two-card fusion over real HTTP (uvicorn, all systems in one process; SQLite and
PostgreSQL): the binding both sides hold and sign, the fused code and its fail-soft
verification, each card's own code, shared usage records, auto-opening, and the refusals
that must store nothing."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from services.common.cards import binding as b
from services.common.crypto import sm2_public_key_pem
from services.common.signing import sign_headers
from services.healthcard.tables import binding_pending
from services.healthcard.tables import bindings as ehc_bindings
from services.healthcard.tables import usage_records as ehc_usage
from services.sdk import SdkError, generate_residents, insured_record
from services.socialcard.tables import bindings as essc_bindings
from tests.http.ehc_refusals import refusal_check


def count(stack, system: str, table) -> int:
    engine = stack.app.state.systems[system].engine
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def stored(stack) -> tuple[int, int, int, int]:
    """Bindings on each side, pending bindings and EHC usage records."""
    return (count(stack, "healthcard", ehc_bindings), count(stack, "socialcard", essc_bindings),
            count(stack, "healthcard", binding_pending), count(stack, "healthcard", ehc_usage))


refused = refusal_check(stored)


@pytest.fixture
def holder(world):
    """A resident holding both an EHC and a claimed e-SSC (not bound yet)."""
    person = world.residents.pop()
    card = world.app.apply("01", person.id_number, person.name, person.phone)
    essc = world.app.claim_essc("01", person.id_number, person.name)
    return card, essc


@pytest.fixture(autouse=True)
def no_faults(world):
    yield
    world.admin.set_faults()


def test_bind_fused_code_answers_both_identities(stack, world, holder) -> None:
    card, essc = holder
    bound = world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    assert bound["state"] == "bound" and bound["status"] == "complete" and bound["version"] == 1
    assert world.app.binding(card["card_id"])["binding_id"] == bound["binding_id"]
    code = world.app.qrcode(card["card_id"], kind="fused")
    assert code["kind"] == "fused" and ":2:" in code["qr_text"]
    before = count(stack, "healthcard", ehc_usage)
    answer = world.term_a.verify(code["qr_text"], step=10105)
    assert answer["card_id"] == card["card_id"] and answer["empi"] == card["empi"]
    assert answer["code_kind"] == "fused" and answer["partial"] is False
    insurance = answer["essc"]
    assert insurance["ssc_card_no"] == essc["ssc_card_no"] and insurance["region"] == essc["region"]
    assert insurance["insurance_type"] in ("310", "390") and insurance["card_state"] == 1
    token = insurance["ec_token"]
    assert len(token) == 38 and token[:6] == essc["region"]
    assert count(stack, "healthcard", ehc_usage) == before + 1  # one scan, one record
    # binding again is idempotent: same version, nothing new
    again = world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    assert again["version"] == 1 and again["binding_id"] == bound["binding_id"]


def test_both_sides_hold_the_binding_with_both_signatures(stack, world, holder,
                                                          tmp_path: Path) -> None:
    card, essc = holder
    bid = world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])["binding_id"]
    proofs = {side: world.admin.binding_proof(bid, system=side) for side in ("ehc", "essc")}
    assert proofs["ehc"]["record"] == proofs["essc"]["record"]
    record = proofs["ehc"]["record"]
    assert record["ehc_card_id"] == card["card_id"] and record["state"] == "bound"
    keys = {side: stack.app.state.systems[system].fusion.public_hex
            for side, system in (("ehc", "healthcard"), ("essc", "socialcard"))}
    assert keys["ehc"] != keys["essc"]
    for holder_side, proof in proofs.items():
        for signer in ("ehc", "essc"):
            part = proof[signer]
            batch = b.SignedBatch.from_json(part["batch"])
            # the leaf recomputed here from the record's canonical JSON, with hashlib's SM3
            canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
            leaf = hashlib.new("sm3", b"\x00" + canonical).digest()
            i = part["index"]
            assert batch.leaves[32 * i:32 * i + 32] == leaf, (holder_side, signer)
            assert batch.verify(keys[signer]), (holder_side, signer)
            assert not batch.verify(keys["essc" if signer == "ehc" else "ehc"])
    # either side proves the binding to the other, and a forged proof is refused
    assert world.admin.check_binding_proof(proofs["essc"], system="ehc")["matches_ours"]
    assert world.admin.check_binding_proof(proofs["ehc"], system="essc")["matches_ours"]
    forged = orjson.loads(orjson.dumps(proofs["ehc"]))
    forged["record"]["ssc_card_no"] = "3" * 20
    forged["record"]["binding_id"] = b.binding_id(card["card_id"], "3" * 20)
    with pytest.raises(SdkError) as info:
        world.admin.check_binding_proof(forged, system="essc")
    assert info.value.code == "BINDING_SIGNATURE_INVALID"
    if shutil.which("openssl"):  # the e-SSC side's signature checks out in OpenSSL too
        batch = b.SignedBatch.from_json(proofs["ehc"]["essc"]["batch"])
        (tmp_path / "pub.pem").write_text(sm2_public_key_pem(keys["essc"]))
        (tmp_path / "msg").write_bytes(b.batch_digest(batch.leaves))
        (tmp_path / "sig").write_bytes(batch.signature)
        done = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
             "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
             "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig")],
            capture_output=True, check=False)
        assert done.returncode == 0, done.stderr


def test_unbind_then_fused_code_is_refused_and_rebind_is_a_new_version(stack, world,
                                                                         holder) -> None:
    card, essc = holder
    world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    old_code = world.app.qrcode(card["card_id"], kind="fused")["qr_text"]
    gone = world.app.unbind(card["card_id"])
    assert gone["state"] == "unbound" and gone["version"] == 2
    for side in ("ehc", "essc"):
        assert world.admin.binding_proof(gone["binding_id"], side)["record"]["state"] == "unbound"
    refused("BINDING_NOT_ACTIVE", stack, world.term_a.verify, old_code)
    refused("BINDING_NOT_FOUND", stack, world.app.qrcode, card["card_id"], kind="fused")
    refused("BINDING_NOT_FOUND", stack, world.app.unbind, card["card_id"])
    # the EHC's own code still works after unbinding
    assert world.term_a.verify(world.app.qrcode(card["card_id"])["qr_text"])["code_kind"] == (
        "dynamic")
    again = world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    assert again["version"] == 3 and again["state"] == "bound"


def test_bad_bindings_are_refused_and_store_nothing(stack, world, holder) -> None:
    card, essc = holder
    other_card, other_essc = world.app.apply("01", *_person(world)), None
    # someone else's e-SSC
    refused("BINDING_IDENTITY_MISMATCH", stack, world.app.bind, other_card["card_id"],
            essc["ssc_card_no"], essc["region"])
    refused("SSC_CARD_NOT_FOUND", stack, world.app.bind, card["card_id"], "9" * 20, "330100")
    refused("BINDING_REGION_MISMATCH", stack, world.app.bind, card["card_id"],
            essc["ssc_card_no"], "339900")
    # a lost, then a cancelled e-SSC
    world.app.essc_action(essc["ssc_card_no"], "report-lost")
    refused("SSC_CARD_LOST", stack, world.app.bind, card["card_id"], essc["ssc_card_no"],
            essc["region"])
    world.app.essc_action(essc["ssc_card_no"], "cancel")
    refused("SSC_CARD_CANCELLED", stack, world.app.bind, card["card_id"], essc["ssc_card_no"],
            essc["region"])
    # a lost EHC
    other_person = world.residents.pop()
    lost_card = world.app.apply("01", other_person.id_number, other_person.name)
    other_essc = world.app.claim_essc("01", other_person.id_number, other_person.name)
    world.app.report_lost(lost_card["card_id"])
    refused("CARD_LOST", stack, world.app.bind, lost_card["card_id"],
            other_essc["ssc_card_no"], other_essc["region"])
    # a malformed request
    refused("INVALID_REQUEST", stack, world.app.bind, card["card_id"], "123", "330100")


def test_forged_binding_signature_is_refused_by_the_essc_side(stack, world, holder) -> None:
    card, essc = holder
    record = b.make_record(card["card_id"], card["empi"], essc["ssc_card_no"],
                           essc["region"], "bound", 1)
    from services.common.crypto import sm2_generate_keypair

    forger, _ = sm2_generate_keypair()  # not the EHC system's key
    batch = b.sign_batch("ehc", forger, [record])
    payload = {"records": [record], "ehc": batch.to_json(), "identities": [
        {"id_type": "01", "id_number": "ignored"}]}
    before = stored(stack)
    body = orjson.dumps(payload)
    resp = httpx.post(f"{stack.url}/essc/v1/peer/bindings:batch", content=body,
                      headers={"Authorization": f"Bearer {stack.admin_token}",
                               "Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["code"] == "BINDING_SIGNATURE_INVALID"
    # a record swapped after signing is refused too
    real = stack.app.state.systems["healthcard"].fusion.private_hex
    batch = b.sign_batch("ehc", real, [record])
    tampered = {**record, "version": 7}
    resp = httpx.post(f"{stack.url}/essc/v1/peer/bindings:batch", content=orjson.dumps(
        {**payload, "records": [tampered], "ehc": batch.to_json()}),
        headers={"Authorization": f"Bearer {stack.admin_token}",
                 "Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["code"] == "BINDING_SIGNATURE_INVALID"
    # the peer route is not for channel apps or terminals
    resp = httpx.post(f"{stack.url}/essc/v1/peer/bindings:batch", content=body,
                      headers=sign_headers(world.app.key, "POST",
                                           "/essc/v1/peer/bindings:batch", body,
                                           secret=world.app.secret))
    assert resp.status_code == 401
    assert stored(stack) == before


def test_fail_soft_when_the_essc_side_is_down_or_slow(stack, world, holder) -> None:
    card, essc = holder
    world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    timeout = stack.settings.peer_timeout_s
    for fault, reason in (({"unavailable": True}, "SOCIALCARD_UNAVAILABLE"),
                          ({"delay_ms": int(timeout * 1000) + 1500}, "SOCIALCARD_TIMEOUT")):
        world.admin.set_faults(**fault)
        code = world.app.qrcode(card["card_id"], kind="fused")["qr_text"]
        t0 = time.perf_counter()
        answer = world.term_a.verify(code)
        took = time.perf_counter() - t0
        assert answer["partial"] is True and answer["partial_reason"] == reason
        assert answer["card_id"] == card["card_id"] and answer["name"]  # EHC identity whole
        # what the EHC side holds itself, nothing it would have to make up
        assert answer["essc"] == {"ssc_card_no": essc["ssc_card_no"], "region": essc["region"]}
        assert took < timeout + 1.0, took  # bounded by our timeout, not by the peer
    world.admin.set_faults()
    answer = world.term_a.verify(world.app.qrcode(card["card_id"], kind="fused")["qr_text"])
    assert answer["partial"] is False and answer["essc"]["ec_token"]


def test_each_card_keeps_its_own_code_and_route(stack, world, holder) -> None:
    card, essc = holder
    world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    ehc_answer = world.term_a.verify(world.app.qrcode(card["card_id"])["qr_text"])
    assert ehc_answer["code_kind"] == "dynamic" and "essc" not in ehc_answer
    essc_code = world.app.essc_qrcode(essc["ssc_card_no"])["qr_text"]
    assert essc_code.startswith("ESSC:")
    answer = world.term_a.verify_essc(essc_code)
    assert answer["ssc_card_no"] == essc["ssc_card_no"] and len(answer["ec_token"]) == 38
    with pytest.raises(SdkError) as info:  # one use only
        world.term_a.verify_essc(essc_code)
    assert info.value.code == "QR_REPLAYED"
    with pytest.raises(SdkError) as info:  # an e-SSC code is not an EHC code
        world.term_a.verify(world.app.essc_qrcode(essc["ssc_card_no"])["qr_text"])
    assert info.value.code == "QR_MALFORMED"
    tampered = essc_code[:-1] + ("0" if essc_code[-1] != "0" else "1")
    with pytest.raises(SdkError) as info:
        world.term_a.verify_essc(tampered)
    assert info.value.code == "QR_TAMPERED"


def test_used_essc_codes_are_swept_once_past_their_expiry(stack, world, holder) -> None:
    """The e-SSC side keeps a used code's row while the code could still pass its expiry
    check, and sweeps the rest (every half minute: on SQLite in a verification's
    transaction, on PostgreSQL beside it): a code used a moment ago stays refused."""
    from datetime import timedelta

    from sqlalchemy import insert

    from services.common.cst import utc_now
    from services.socialcard.tables import code_uses

    _, essc = holder
    cards = stack.app.state.systems["socialcard"].cards
    with cards.engine.begin() as conn:
        conn.execute(insert(code_uses), [
            {"nonce": "spent-code", "expires_at": utc_now() - timedelta(seconds=2)},
            {"nonce": "live-code", "expires_at": utc_now() + timedelta(seconds=60)}])
    cards.sweep.next_pass = 0.0  # the next verification sweeps
    essc_code = world.app.essc_qrcode(essc["ssc_card_no"])["qr_text"]
    world.term_a.verify_essc(essc_code)
    if cards.sweeping is not None:  # PostgreSQL: the pass runs beside the verification
        cards.sweeping.join(30)
    with cards.engine.connect() as conn:
        kept = set(conn.execute(select(code_uses.c.nonce)).scalars())
    assert "spent-code" not in kept and "live-code" in kept, kept
    cards.sweep.next_pass = 0.0
    with pytest.raises(SdkError) as info:  # swept again: the code just used stays used
        world.term_a.verify_essc(essc_code)
    assert info.value.code == "QR_REPLAYED"


def test_usage_records_reach_the_other_side_exactly_once_in_order(stack, world,
                                                                  holder) -> None:
    card, essc = holder
    world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    steps = (10101, 10102, 10104, 10103)
    for step in steps:
        world.term_a.verify(world.app.qrcode(card["card_id"], kind="fused")["qr_text"],
                            step=step)
    world.term_b.verify_essc(world.app.essc_qrcode(essc["ssc_card_no"])["qr_text"])
    time.sleep(1.2)  # records are shared once they have settled (SHARE_SETTLE_S)
    world.admin.pull_usage("essc")
    world.admin.pull_usage("ehc")
    for _ in range(2):  # pulling again brings nothing twice
        assert world.admin.pull_usage("essc") == 0 and world.admin.pull_usage("ehc") == 0
    on_essc = world.app.usage_history(essc["ssc_card_no"], system="essc")
    from_ehc = [r for r in on_essc if r["source"] == "ehc"]
    assert [r["step"] for r in sorted(from_ehc, key=lambda r: r["source_id"])] == list(steps)
    assert len({r["source_id"] for r in from_ehc}) == len(from_ehc) == len(steps)
    on_ehc = world.app.usage_history(card["card_id"])
    assert [r["source"] for r in on_ehc].count("essc") == 1
    assert [r["source"] for r in on_ehc].count("ehc") == len(steps)


def test_auto_opening_binds_every_unbound_holder_once(stack, world) -> None:
    admin = world.admin
    people = list(generate_residents(30, seed=4242))
    admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name,
                          "phone": p.phone} for p in people])  # the real-name source
    insured = [insured_record(p, 900_000 + i) for i, p in enumerate(people)]
    insured[0]["card_state"] = 2  # a lost e-SSC is not auto-bound
    admin.add_insured(insured)
    totals = {"holders": 0, "opened": 0, "bound": 0}
    after = ""
    while True:
        page = admin.fuse_page(after, limit=7)
        if page["next_after"] is None:
            break
        for k in totals:
            totals[k] += page[k]
        after = page["next_after"]
    bound = {r["ssc_card_no"]: r for r in _essc_bindings(stack) if r["state"] == "bound"}
    assert all(i["ssc_card_no"] in bound for i in insured[1:])
    assert insured[0]["ssc_card_no"] not in bound  # the lost e-SSC
    assert totals["opened"] >= 29 and totals["bound"] >= 29
    for i in insured[1:4]:  # held by the EHC side too, with both signatures
        proof = admin.binding_proof(bound[i["ssc_card_no"]]["binding_id"])
        assert proof["ehc"] and proof["essc"] and proof["record"]["state"] == "bound"
    again = admin.fuse_page("", limit=2000)  # a second run opens and binds nothing more
    assert again["opened"] == again["bound"] == 0
    assert again["refused"] == again["holders"]  # only holders whose EHC is lost remain
    report = admin.reconcile_bindings()
    assert report["clean"], report


def _essc_bindings(stack) -> list[dict]:
    engine = stack.app.state.systems["socialcard"].engine
    with engine.connect() as conn:
        return [r._asdict() for r in conn.execute(select(essc_bindings)).all()]


def _person(world) -> tuple[str, str]:
    p = world.residents.pop()
    return p.id_number, p.name


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_fuse_refuses_bad_holders_one_by_one_and_binds_the_rest(tmp_path, backend) -> None:
    """Issue 17: one holder with a bad ID check digit made every fuse page fail with 500,
    and auto-opening skipped the registry's real-name check. Now each is refused on its
    own with its reason, and the page binds the others; the import refuses bad rows."""
    import os

    from services.sdk import AdminClient
    from services.socialcard.tables import insured
    from tests.stack import PG_ENV, drop_schemas, make_test_settings, start_stack

    if backend == "postgres" and not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    settings = make_test_settings(tmp_path, backend)
    stack = start_stack(settings)
    try:
        admin = AdminClient(stack.url, stack.admin_token)
        people = list(generate_residents(5, seed=1717))
        good, renamed, bad_id, typo_row, other = people
        admin.add_residents([{"id_type": "01", "id_number": p.id_number,
                              "name": p.name + ("某" if p is renamed else ""),
                              "phone": p.phone} for p in (good, renamed, bad_id, other)])
        records = [insured_record(p, 9_000 + i) for i, p in enumerate(people)]
        flipped = typo_row.id_number[:-1] + ("0" if typo_row.id_number[-1] != "0" else "1")
        records[3] = {**records[3], "id_number": flipped}
        answer = admin.add_insured(records)
        assert answer["imported"] == 4 and answer["refused"] == [
            {"row": 3, "code": "INVALID_ID_NUMBER"}]
        # a record from before the import validated: a bad check digit already stored
        social = stack.app.state.systems["socialcard"]
        bad = bad_id.id_number[:-1] + ("0" if bad_id.id_number[-1] != "0" else "1")
        with social.engine.begin() as conn:
            conn.execute(insured.update().where(insured.c.ssc_card_no
                                                == records[2]["ssc_card_no"])
                         .values(id_number_enc=social.cards.cipher.encrypt(bad)))
        page = admin.fuse_page("", 2000)
        reasons = {r["ssc_card_no"]: r["reason"] for r in page["refusals"]}
        assert reasons == {records[1]["ssc_card_no"]: "REALNAME_MISMATCH",
                           records[2]["ssc_card_no"]: "INVALID_ID_NUMBER"}
        assert page["bound"] == 2 and page["refused"] == 2 and page["holders"] == 4
        again = admin.fuse_page("", 2000)  # resumable: the refused are refused again
        assert again["bound"] == 0 and again["refused"] == 2
        admin.close()
    finally:
        stack.stop()
        drop_schemas(settings)
