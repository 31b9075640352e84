"""Strong real-name login under attack (issue 16), over real HTTP on SQLite and
PostgreSQL. Before: ``POST /channel/v1/login {id_number, name}`` gave a session, 60 wrong
names in 3 s went unthrottled, and the 401 told whether a name matched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from sqlalchemy import update

from services.channel.tables import challenges
from services.sdk import ResidentClient, SdkError
from tests.conftest import World, backend_settings, seeded_world
from tests.stack import LiveStack, drop_schemas, start_stack


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(request, tmp_path_factory) -> Iterator[tuple[LiveStack, World]]:
    # one client address runs every test here: its own limits are set out of the way
    settings = backend_settings(request, tmp_path_factory, login_codes_per_client=1000,
                                login_tries_per_client=1000)
    stack = start_stack(settings)
    yield stack, seeded_world(stack, residents=12)
    stack.stop()
    drop_schemas(settings)


def post(stack: LiveStack, path: str, body: dict) -> httpx.Response:
    return httpx.post(stack.url + path, json=body, timeout=10)


def ask_code(stack: LiveStack, id_number: str, name: str) -> httpx.Response:
    return post(stack, "/channel/v1/login/code",
                {"id_type": "01", "id_number": id_number, "name": name})


def outbox_size(world: World, phone: str) -> int:
    return len(world.admin.sms_outbox(phone, 50))


def refusal(call, *args) -> str:
    """The error code a call is refused with (fails when it is not refused)."""
    with pytest.raises(SdkError) as info:
        call(*args)
    return info.value.code


def test_asking_for_a_code_tells_nothing(live) -> None:
    stack, world = live
    person, stranger = world.residents.pop(), world.residents.pop()
    right = ask_code(stack, person.id_number, person.name)
    wrong = ask_code(stack, person.id_number, person.name + "某")
    other = ask_code(stack, stranger.id_number, person.name)
    assert right.status_code == wrong.status_code == other.status_code == 202
    shapes = [{k: (v if k != "challenge_id" else len(v)) for k, v in r.json().items()}
              for r in (right, wrong, other)]
    assert shapes[0] == shapes[1] == shapes[2]
    assert outbox_size(world, person.phone) == 1  # only the matching identity got a code
    assert outbox_size(world, stranger.phone) == 0
    code = world.admin.login_code(person.phone)
    # the code that was sent does not open the wrong name's challenge: one answer
    for challenge in (wrong, other):
        refused = post(stack, "/channel/v1/login",
                       {"challenge_id": challenge.json()["challenge_id"], "code": code})
        assert refused.status_code == 401 and refused.json()["code"] == "LOGIN_REFUSED"
    ok = post(stack, "/channel/v1/login",
              {"challenge_id": right.json()["challenge_id"], "code": code})
    assert ok.status_code == 200 and ok.json()["token"]


def test_sixty_wrong_names_then_the_right_one_gets_nothing(live) -> None:
    stack, world = live
    person = world.residents.pop()
    answers = [ask_code(stack, person.id_number, f"{person.name}{i}") for i in range(60)]
    assert [a.status_code for a in answers[:3]] == [202] * 3
    assert {a.status_code for a in answers[3:]} == {429}
    assert {a.json()["code"] for a in answers[3:]} == {"LOGIN_THROTTLED"}
    assert int(answers[-1].headers["retry-after"]) > 0
    last = ask_code(stack, person.id_number, person.name)  # the right name, too late
    assert last.status_code == 429 and outbox_size(world, person.phone) == 0


def test_a_code_takes_five_tries_and_is_used_once(live) -> None:
    stack, world = live
    person = world.residents.pop()
    resident = ResidentClient(stack.url)
    challenge = resident.request_code(person.id_number, person.name)
    code = world.admin.login_code(person.phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert refusal(resident.log_in, challenge, wrong) == "LOGIN_REFUSED"
    # burnt: even the right code is refused now
    assert refusal(resident.log_in, challenge, code) == "LOGIN_REFUSED"
    again = resident.request_code(person.id_number, person.name)
    resident.log_in(again, world.admin.login_code(person.phone))
    assert resident.me()["name"].startswith(person.name[0])
    used = world.admin.login_code(person.phone)
    assert refusal(resident.log_in, again, used) == "LOGIN_REFUSED"  # used once
    resident.close()


def test_an_expired_code_is_refused(live) -> None:
    stack, world = live
    person = world.residents.pop()
    resident = ResidentClient(stack.url)
    challenge = resident.request_code(person.id_number, person.name)
    channel = stack.app.state.systems["channel"]
    with channel.engine.begin() as conn:
        conn.execute(update(challenges).values(expires_at=datetime(2000, 1, 1)))
    late = world.admin.login_code(person.phone)
    assert refusal(resident.log_in, challenge, late) == "LOGIN_REFUSED"
    resident.close()


def test_guessing_locks_the_identity_with_retry_after(live) -> None:
    stack, world = live
    person = world.residents.pop()
    outcomes = []
    for _ in range(3):  # three codes (the send limit), five tries each: 15 tries
        challenge = ask_code(stack, person.id_number, person.name).json()["challenge_id"]
        for guess in range(5):
            r = post(stack, "/channel/v1/login",
                     {"challenge_id": challenge, "code": f"{guess:06d}"})
            outcomes.append((r.status_code, r.json()["code"], r.headers.get("retry-after")))
    assert outcomes[:10] == [(401, "LOGIN_REFUSED", None)] * 10
    locked = outcomes[10:]
    assert {(s, c) for s, c, _ in locked} == {(429, "LOGIN_LOCKED")}
    assert all(int(wait) > 3000 for _, _, wait in locked)  # the hour's window


def test_a_client_asking_for_many_identities_is_throttled(tmp_path_factory) -> None:
    from tests.stack import make_test_settings

    settings = make_test_settings(tmp_path_factory.mktemp("client"),
                                  login_codes_per_client=4)
    stack = start_stack(settings)
    try:
        world = seeded_world(stack, residents=6)
        statuses = [ask_code(stack, p.id_number, p.name).status_code for p in world.residents]
        assert statuses == [202] * 4 + [429] * 2
    finally:
        stack.stop()
