"""Every route against every caller kind: channel app, terminal of institution A,
terminal of institution B, admin, anonymous. Routes are classified by their OpenAPI tag;
an allowed caller is never answered 401/403, a denied one always is. And HTTP's methods
as real clients meet them: HEAD wherever GET is (a monitor's ``curl -I``, a balancer's
check), a 405 that lists what the path takes in ``Allow`` (RFC 9110), the hot routes
below the framework included."""

from __future__ import annotations

import re

import httpx
import pytest

from services.common.signing import sign_headers

ALLOWED = {  # tag -> caller kinds allowed
    "channel": {"app"},
    "institution": {"terminal_a", "terminal_b"},
    "admin": {"admin"},
    "registry": {"admin"},  # and the peer systems' service token
    "peer": {"admin"},  # the peer systems' service token (admin is accepted too)
    "resident": set(),  # only a logged-in resident's session
    "data": {"data", "admin"},  # the data resources layer's read-only exports
    "public": {"app", "terminal_a", "terminal_b", "admin", "data", "anonymous"},
}
CALLERS = ("app", "terminal_a", "terminal_b", "admin", "data", "anonymous")


def operations(stack) -> list[tuple[str, str, str]]:
    spec = stack.app.openapi()
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            out.append((method.upper(), path, op.get("tags", ["public"])[0]))
    return out


def headers_for(caller: str, world, stack, method: str, path: str, body: bytes) -> dict:
    if caller == "app":
        return sign_headers(world.app.key, method, path, body, secret=world.app.secret)
    if caller in ("terminal_a", "terminal_b"):
        t = world.term_a if caller == "terminal_a" else world.term_b
        return sign_headers(t.terminal_id, method, path, body, secret=t.secret)
    if caller == "admin":
        return {"Authorization": f"Bearer {stack.admin_token}"}
    if caller == "data":
        return {"Authorization": f"Bearer {stack.app.state.data_token}"}
    return {}


def test_every_route_against_every_caller(stack, world) -> None:
    ops = operations(stack)
    assert len(ops) >= 25
    tags = {t for _, _, t in ops}
    assert tags <= set(ALLOWED), tags - set(ALLOWED)
    body = b"{}"
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        for method, template, tag in ops:
            path = re.sub(r"\{[^}]+\}", "0" * 64, template)
            payload = b"" if method in ("GET", "DELETE") else body
            for caller in CALLERS:
                h = {"Content-Type": "application/json",
                     **headers_for(caller, world, stack, method, path, payload)}
                resp = http.request(method, path, content=payload, headers=h)
                denied = resp.status_code in (401, 403)
                allowed = caller in ALLOWED[tag]
                assert resp.status_code < 500, (method, template, caller, resp.text)
                if allowed:
                    assert not denied or resp.json()["code"] in (
                        "CARD_LOST", "CARD_CANCELLED", "TERMINAL_MISMATCH"), \
                        (method, template, caller, resp.status_code, resp.text)
                else:
                    assert denied, (method, template, caller, resp.status_code, resp.text)


def test_institutions_see_only_their_own(stack, world) -> None:
    person = world.residents.pop()
    card = world.app.apply("01", person.id_number, person.name)
    rec = world.term_a.verify(world.app.qrcode(card["card_id"])["qr_text"])["usage_record_id"]
    assert rec in [r["id"] for r in world.term_a.usage_records(limit=1000)]
    assert rec not in [r["id"] for r in world.term_b.usage_records(limit=1000)]
    world.term_a.link_patient("A-77", card["card_id"])
    from services.sdk import SdkError

    with pytest.raises(SdkError) as info:
        world.term_b.linked_card("A-77")
    assert info.value.code == "PATIENT_LINK_NOT_FOUND"


@pytest.mark.parametrize("path", ["/healthz", "/ping", "/readyz", "/channel/", "/docs"])
def test_head_answers_as_get_without_the_body(stack, path: str) -> None:
    got, head = httpx.get(stack.url + path), httpx.head(stack.url + path)
    assert got.status_code == head.status_code == 200 and got.content
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["x-request-id"] != got.headers["x-request-id"]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/healthz", "GET, HEAD"),  # a hot route: its path is declared in FastAPI too
    ("GET", "/ehc/v1/qrcodes/verify", "POST"),
    ("DELETE", "/ping", "GET, HEAD"),
    ("PUT", "/ehc/v1/cards/X1/qrcode", "GET, HEAD"),  # a path with a parameter
    ("DELETE", "/ehc/v1/cards/X1", "GET, HEAD, PATCH"),
    # a literal path beside a parameter's (/cards/{card_id}): the literal one's methods
    ("OPTIONS", "/ehc/v1/cards/lookup", "POST"),
    ("PUT", "/ehc/v1/cards/X1/binding", "GET, HEAD, POST, DELETE"),
])
def test_a_method_the_path_does_not_take_is_405_with_allow(stack, method: str,
                                                           path: str, allow: str) -> None:
    answer = httpx.request(method, stack.url + path)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == allow
    assert answer.json()["code"] == "METHOD_NOT_ALLOWED"


def test_an_unknown_path_is_404_whatever_the_method(stack) -> None:
    for method in ("GET", "HEAD", "POST"):
        assert httpx.request(method, stack.url + "/no/such/path").status_code == 404
