from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.registry.synthetic import generate_residents
from services.sdk import AdminClient, ChannelClient, TerminalClient
from tests.stack import LiveStack, drop_schemas, start_stack, test_settings

_inst_counter = itertools.count(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LiveStack]:  # type: ignore[no-untyped-def]
    settings = test_settings(tmp_path_factory.mktemp("var"))
    live = start_stack(settings)
    yield live
    live.stop()
    drop_schemas(settings)


@dataclass
class World:
    """A seeded corner of the province: residents, one app, two institutions' terminals."""

    admin: AdminClient
    app: ChannelClient
    term_a: TerminalClient
    term_b: TerminalClient
    residents: list


@pytest.fixture(scope="module")
def world(stack: LiveStack) -> Iterator[World]:
    admin = AdminClient(stack.url, stack.admin_token)
    people = list(generate_residents(40, seed=7))
    admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name,
                          "phone": p.phone} for p in people])
    terms = []
    for _ in range(2):
        code = f"3301{next(_inst_counter):08d}"
        admin.add_institution(code, f"Hospital {code}", "330100")
        cred = admin.add_terminal(code, "0101", 2)
        terms.append(TerminalClient(stack.url, cred["terminal_id"], cred["secret"],
                                    city_code="330100", terminal_type=2))
    app_cred = admin.add_channel_app("浙里办 test")
    app = ChannelClient(stack.url, app_cred["app_key"], app_cred["app_secret"])
    yield World(admin, app, terms[0], terms[1], people)
    for c in (admin, app, *terms):
        c.close()
