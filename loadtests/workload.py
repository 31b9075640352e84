"""What a load-test user needs from the seed file: terminals, cards, a channel app, and
signed requests made through the SDK (no server internals)."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from services.sdk import ChannelClient, Step, TerminalClient

VERIFY_PATH = "/ehc/v1/qrcodes/verify"
STEPS = tuple(int(s) for s in Step if Step.REGISTRATION <= s <= Step.PRESCRIPTION)
BAD_KINDS = {  # kind -> the refusal the server must give
    "tampered": "QR_TAMPERED",
    "replayed": "QR_REPLAYED",
    "lost card": "CARD_LOST",
    "expired": "QR_EXPIRED",
}


@dataclass
class Seed:
    url: str | None
    terminals: list[dict]
    app: dict
    cards: list[str]
    lost_cards: list[str]
    fused_cards: list[str]  # bound to an e-SSC: fused codes, settlements
    hospital: dict  # a session to book: session_id, slots, the hospital systems' token
    tills: list[dict]  # terminals of designated retail pharmacies

    @classmethod
    def load(cls, path: str | Path = "var/seed.json") -> Seed:
        path = Path(path)
        data = json.loads(path.read_text())
        def terminals(institutions: list[dict]) -> list[dict]:
            return [{**t, "city_code": inst["city_code"], "institution_name": inst["name"],
                     "served_by": inst.get("served_by")}
                    for inst in institutions for t in inst["terminals"]]
        lost = set(data.get("lost_cards", []))
        return cls(data.get("url"), terminals(data["institutions"]), data["channel_apps"][0],
                   [c["card_id"] for c in data["cards"] if c["card_id"] not in lost],
                   sorted(lost), [c for c in data.get("fused_cards", []) if c not in lost],
                   data.get("hospital", {}), terminals(data.get("pharmacies", [])))

    def terminal_for(self, turn: int, rng: random.Random) -> dict:
        """A scanning user's terminal: the users take the servers in turn (where the seed
        knows which server the balancer sends each institution to), so each server meets
        as many users however unevenly the hash split the seed's few institutions; a
        terminal at random among the turn's server's (among all on one server)."""
        by_server: dict[str, list[dict]] = {}
        for t in self.terminals:
            by_server.setdefault(t["served_by"] or "", []).append(t)
        return rng.choice(by_server[sorted(by_server)[turn % len(by_server)]])


def terminal_signer(t: dict, base_url: str) -> TerminalClient:
    """An SDK terminal used only to build and sign bodies (Locust sends them)."""
    return TerminalClient(base_url, t["terminal_id"], t["secret"], city_code=t["city_code"],
                          terminal_type=t["terminal_type"],
                          institution_name=t["institution_name"])


def channel_signer(app: dict, base_url: str) -> ChannelClient:
    return ChannelClient(base_url, app["app_key"], app["app_secret"])


def verify_request(term: TerminalClient, qr_text: str, rng: random.Random,
                   step: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(term.verify_body(qr_text, step=step or rng.choice(STEPS)))
    headers = term.auth_headers("POST", VERIFY_PATH, body)
    headers["Content-Type"] = "application/json"
    return body, headers


def qrcode_request(app: ChannelClient, card_id: str, kind: str = "dynamic"
                   ) -> tuple[str, dict[str, str]]:
    path = f"/ehc/v1/cards/{card_id}/qrcode"
    return path + f"?kind={kind}", app.auth_headers("GET", path, b"", f"kind={kind}")


def keyed_request(term: TerminalClient, path: str, payload: object | None
                  ) -> tuple[bytes, dict[str, str]]:
    """A signed settlement call with a fresh idempotency key."""
    body = b"" if payload is None else orjson.dumps(payload)
    headers = term.auth_headers("POST", path, body)
    headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = uuid.uuid4().hex
    return body, headers


FEES = [{"code": "consultation", "category": "A", "amount_fen": 2_500},
        {"code": "drugs", "category": "A", "amount_fen": 12_000},
        {"code": "lab", "category": "B", "amount_fen": 8_000},
        {"code": "service", "category": "C", "amount_fen": 500}]
BASKET = [{"code": "drugs", "category": "A", "amount_fen": 6_800},  # a retail purchase
          {"code": "vitamins", "category": "C", "amount_fen": 1_200}]


def tamper(qr_text: str) -> str:
    last = qr_text[-1]
    return qr_text[:-1] + ("0" if last != "0" else "1")
