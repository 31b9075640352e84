"""Personal data never in clear: not in the server's logs of a full run (real HTTP,
INFO level, a separate process), not in the database files, masked for channel apps.
Identifiers in a path (a card's ID, a birth certificate's number) are logged by their
parameter's name, not their value."""

from __future__ import annotations

import contextlib
import os
from datetime import date
from pathlib import Path

import httpx

from services import sdk
from services.common.cards.idcard import make_resident_id
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings


def test_planted_identities_never_appear_in_logs_or_files(tmp_path: Path) -> None:
    var = tmp_path / "var"
    log = tmp_path / "server.log"
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "INFO"}
    Settings(var_dir=var)  # the dev secrets are made by the server; read them after start
    port = 18000 + os.getpid() % 1000
    with log.open("w") as fh:
        server = sdk.spawn_server(env, port, "--log-level", "info", stdout=fh, stderr=fh)
    url = f"http://127.0.0.1:{port}"
    try:
        token = deployment_secret(Settings(var_dir=var), "admin_token")
        admin = sdk.AdminClient(url, token)
        people = list(sdk.generate_residents(5, seed=99))
        admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name,
                              "phone": p.phone} for p in people])
        admin.add_institution("330100009999", "Log test hospital", "330100")
        cred = admin.add_terminal("330100009999", "0101", 1)
        app_cred = admin.add_channel_app("log test app")
        app = sdk.ChannelClient(url, app_cred["app_key"], app_cred["app_secret"])
        term = sdk.TerminalClient(url, cred["terminal_id"], cred["secret"], city_code="330100")
        card_ids = []
        for p in people:
            card = app.apply("01", p.id_number, p.name, p.phone)
            card_ids.append(card["card_id"])
            assert app.card(card["card_id"])["card_id"] == card["card_id"]  # framework
            assert p.id_number not in str(card) and p.phone not in str(card)
            assert card["name"] != p.name  # masked for the app
            ident = term.verify(app.qrcode(card["card_id"])["qr_text"])
            assert ident["id_number"] == p.id_number  # the institution needs it in full
        with contextlib.suppress(sdk.SdkError):  # a refused apply is logged too
            app.apply("01", people[0].id_number, "错误姓名")
        admin.sms_outbox(people[0].phone)  # a phone number in a query string
        # an ID number in a path no route has (a client's mistake): a 404, not logged
        assert httpx.get(f"{url}/registry/v1/people/{people[1].id_number}").status_code == 404
        cert = "L123456789"  # a newborn's registration and its ID number: an operator's
        admin.register_birth(cert, "小宝", "1", "2026-11-20", people[0].id_number)
        admin.issue_id_number(cert, make_resident_id("330106", date(2026, 11, 20), 7))
    finally:
        sdk.stop_server(server)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert '"path":"/ehc/v1/qrcodes/verify"' in text  # the access log was written
    for template in ("/ehc/v1/cards/{card_id}/qrcode", "/ehc/v1/cards/{card_id}",
                     "/registry/v1/births/{birth_cert_no}/id-number", "/registry/v1/…"):
        assert f'"path":"{template}"' in text  # the fast path's route and the framework's
    for identifier in (cert, *card_ids):
        assert identifier not in text, f"{identifier!r} in the logs"
    blobs = [f.read_bytes() for f in var.glob("*.db*")]
    assert blobs
    for p in people:
        for secret in (p.id_number, p.name, p.phone, "错误姓名"):
            assert secret not in text, f"{secret!r} in the logs"
            for blob in blobs:
                assert secret.encode() not in blob, f"{secret!r} in a database file"


def test_the_access_line_writes_templates_not_values() -> None:
    """A value equal to a literal segment ('v1') is not mistaken for it: the template
    comes from the route that matched; a route without parameters is its path; a path
    no route matched stops at its system and version."""
    from fastapi.routing import APIRoute

    from services.common.logs import logged_path

    card = APIRoute("/ehc/v1/cards/{card_id}", lambda card_id: card_id)
    assert logged_path({"path": "/ehc/v1/cards/v1", "route": card,
                        "path_params": {"card_id": "v1"}}) == "/ehc/v1/cards/{card_id}"
    assert logged_path({"path": "/ehc/v1/cards/ABC/qrcode",
                        "route_path": "/ehc/v1/cards/{card_id}/qrcode"}) == \
        "/ehc/v1/cards/{card_id}/qrcode"
    assert logged_path({"path": "/openapi.json", "path_params": {}}) == "/openapi.json"
    assert logged_path({"path": "/registry/v1/people/330106200611200074"}) == \
        "/registry/v1/…"
    assert logged_path({"path": "/nowhere"}) == "/nowhere"
