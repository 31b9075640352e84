"""Locust workload of the card network: terminals scanning codes (the hot path), fused
codes answering both identities, settlements with their payments at hospitals and at
retail pharmacies' tills, channel apps refreshing codes and the phone as the hospital's
kiosk, in a default mix or in the proportions of the twin's demand curve.

Configured through Locust's own parser (``--ehc-*`` options, ``loadtests/options.py``;
``locust -f loadtests/locustfile.py --help`` lists them); ``ehc loadtest`` sets them. Each
kind of user has its weight in the default mix as a class attribute; a mix given with
``--ehc-weights`` (or the demand curve's) replaces them when the test starts.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from functools import cache
from pathlib import Path
from typing import Any

from locust import LoadTestShape, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

from loadtests import mix, options, shapes
from loadtests.options import TRIVIAL
from loadtests.slo import HOT, evaluate
from loadtests.workload import (
    BAD_KINDS,
    BASKET,
    FEES,
    VERIFY_PATH,
    Seed,
    channel_signer,
    keyed_request,
    qrcode_request,
    tamper,
    terminal_signer,
    verify_request,
)
from services.sdk import Step, TerminalClient

RECORD_IDS: list[int] = []  # usage records of the verifies this process counted as OK
BOOKING_IDS: list[str] = []  # bookings this process saw acknowledged
SCANNER_TURNS = itertools.count()  # the scanning users this process started, in turn

events.init_command_line_parser.add_listener(options.add_arguments)


@cache
def load_seed(path: str) -> Seed:
    return Seed.load(path)


def why(resp) -> str:
    """A failed answer in a line: its status and the start of its body (none when the
    connection was reset)."""
    return f"{resp.status_code} {(resp.text or '')[:80]}"


def answer_of(resp) -> dict | None:
    """A 2xx answer's JSON; None (and the request a failure) when the body is cut short
    (a server that died while answering)."""
    try:
        return resp.json()
    except (ValueError, TypeError):
        resp.failure(f"{why(resp)}: the answer was cut short")
        return None


def error_code(resp) -> str | None:
    """The stack's refusal code, or None for an answer that is not the stack's (a reset
    connection, a balancer's page)."""
    try:
        return resp.json().get("code")
    except (ValueError, TypeError, AttributeError):  # no body, or not the stack's
        return None


def expected(resp, status: int = 200) -> dict | None:
    """The answer's JSON when it has the expected status; else None and the request
    counted a failure (so is an answer cut short)."""
    if resp.status_code != status:
        resp.failure(why(resp))
        return None
    return answer_of(resp)


class Configured:
    """What every user of this workload reads from Locust's parsed options."""

    environment: Any
    weight: Any = 1  # Locust's User declares it too

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    @property
    def seed(self) -> Seed:
        return load_seed(self.options.ehc_seed_file)

    def wait_time(self) -> float:
        """Constant throughput per user (a fixed offered rate, no coordinated omission),
        or back to back when no rate is given."""
        rate = self.options.ehc_rate_per_user
        return constant_throughput(rate)(self) if rate > 0 else 0.0  # type: ignore[arg-type]  # the pacing keeps its state on the user


class CardUser(Configured, FastHttpUser):
    abstract = True

    def on_start(self) -> None:
        self.rng = random.Random()
        self.app = channel_signer(self.seed.app, str(self.host))

    def fresh_code(self, card_id: str | None = None, kind: str = "dynamic") -> str | None:
        card_id = card_id or self.rng.choice(self.seed.cards)
        path, headers = qrcode_request(self.app, card_id, kind)
        name = "refresh code" if kind == "dynamic" else "refresh fused code"
        with self.client.get(path, headers=headers, name=name,
                             catch_response=True) as resp:
            answer = expected(resp)
            return answer["qr_text"] if answer else None


class ScanningUser(CardUser):
    """A hospital terminal: it verifies the codes patients show."""

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        # each generator process's users take the servers in turn from its own index on,
        # so that the processes' odd users do not all start at the same server
        turn = next(SCANNER_TURNS) + max(0, getattr(self.environment.runner, "worker_index", 0))
        self.term = terminal_signer(self.seed.terminal_for(turn, self.rng), str(self.host))
        readers = [t for t in self.seed.terminals if t.get("physical_cards")]
        # a physical card (static code) is shown only where a card reader is
        self.reader = terminal_signer(self.rng.choice(readers), str(self.host)) \
            if readers else None

    def verify(self, qr_text: str, name: str, expect: str | None,
               step: int | None = None, term: TerminalClient | None = None) -> dict | None:
        body, headers = verify_request(term or self.term, qr_text, self.rng, step)
        with self.client.post(VERIFY_PATH, data=body, headers=headers, name=name,  # type: ignore[arg-type]  # bytes are sent as is; the stub omits bytes
                              catch_response=True) as resp:
            if expect is None:
                answer = expected(resp)
                if answer is None:
                    return None
                if name in HOT:
                    RECORD_IDS.append(answer["usage_record_id"])
                return answer
            if resp.status_code == 200 or error_code(resp) != expect:
                resp.failure(f"expected {expect}, got {why(resp)}")
            else:
                resp.success()
            return None

    def scan_and_settle(self, term: TerminalClient, step: int, items: list[dict],
                        scan_name: str, settle_name: str) -> None:
        code = self.fresh_code(self.rng.choice(self.seed.fused_cards), kind="fused")
        answer = code and self.verify(code, scan_name, None, step=step, term=term)
        token = answer and (answer.get("essc") or {}).get("ec_token")
        if not token:
            return  # the e-SSC side answered partial: the visit pays at the till
        body, headers = keyed_request(term, "/essc/v1/settlements",
                                      {"ec_token": token, "items": items})
        with self.client.post("/essc/v1/settlements", data=body, headers=headers,  # type: ignore[arg-type]  # bytes are sent as is; the stub omits bytes
                              name=f"{settle_name} upload", catch_response=True) as resp:
            answer = expected(resp)
            if answer is None:
                return
            sid = answer["settlement_id"]
        path = f"/essc/v1/settlements/{sid}/settle"
        body, headers = keyed_request(term, path, None)
        with self.client.post(path, data=body, headers=headers, name=settle_name,  # type: ignore[arg-type]  # bytes are sent as is; the stub omits bytes
                              catch_response=True) as resp:
            answer = expected(resp)
            if answer is not None and answer["state"] not in ("settled",
                                                              "awaiting_confirmation"):
                resp.failure(f"settlement ended {answer['state']}")


class TerminalUser(ScanningUser):
    """Each scan shows a fresh dynamic code and verifies it online; a share is bad."""

    weight = mix.DEFAULT["terminal"]

    def on_start(self) -> None:
        super().on_start()
        self.aged: list[tuple[float, str]] = []  # codes kept to be shown once expired

    @task
    def scan(self) -> None:
        if self.rng.random() < self.options.ehc_bad_share:
            self.bad_scan()
            return
        code = self.fresh_code()
        if code is None:
            return
        self.verify(code, "verify", None)
        if len(self.aged) < 5:
            self.aged.append((time.monotonic(), code))

    def bad_scan(self) -> None:
        kind = self.rng.choice(list(BAD_KINDS))
        if kind == "expired":
            now = time.monotonic()
            old = [c for t, c in self.aged if now - t > self.options.ehc_expired_after_s]
            if not old:
                kind = "tampered"  # nothing has expired yet this early in the test
            else:
                self.aged = [(t, c) for t, c in self.aged if c != old[0]]
                self.verify(old[0], "verify [expired]", BAD_KINDS["expired"])
                return
        if kind == "lost card":
            if not self.seed.lost_cards or self.reader is None:
                return
            self.verify(self.rng.choice(self.seed.lost_cards) + ":1", "verify [lost card]",
                        BAD_KINDS["lost card"], term=self.reader)
            return
        code = self.fresh_code()
        if code is None:
            return
        if kind == "tampered":
            self.verify(tamper(code), "verify [tampered]", BAD_KINDS["tampered"])
        else:  # replayed: use the code up to its limit, then once more
            for _ in range(self.options.ehc_code_limit):
                self.verify(code, "verify", None)
            self.verify(code, "verify [replayed]", BAD_KINDS["replayed"])


class FusedUser(ScanningUser):
    """A resident of the online flow shows the fused code; the terminal gets both
    identities (the e-SSC side is asked within its timeout)."""

    weight = mix.DEFAULT["fused"]

    @task
    def scan_fused(self) -> None:
        code = self.fresh_code(self.rng.choice(self.seed.fused_cards), kind="fused")
        if code is not None:
            answer = self.verify(code, "verify fused", None)
            if answer is not None and answer.get("partial"):
                events.request.fire(request_type="CHECK", name="fused answered partial",
                                    response_time=0, response_length=0, exception=None)


class SettleUser(ScanningUser):
    """At the payment step: a fused scan gives the voucher token, then the fees are
    uploaded and settled (insurance split, the cash part through the payment gateway)."""

    weight = mix.DEFAULT["settle"]

    @task
    def settle_visit(self) -> None:
        self.scan_and_settle(self.term, Step.PAYMENT, FEES, "verify fused", "settle")


class RetailUser(ScanningUser):
    """A purchase at a designated retail pharmacy: its till scans the fused code at the
    pharmacy step and settles the basket from the personal account and cash (the fund
    pays what the policy lets a pharmacy charge it)."""

    weight = mix.DEFAULT["retail"]

    def on_start(self) -> None:
        super().on_start()
        self.till = terminal_signer(self.rng.choice(self.seed.tills), str(self.host))

    @task
    def purchase(self) -> None:
        self.scan_and_settle(self.till, Step.PHARMACY, BASKET, "verify pharmacy",
                             "pharmacy settle")


class AppUser(CardUser):
    """A resident with the app open: the code refreshes, nobody scans it."""

    weight = mix.DEFAULT["app"]

    @task
    def refresh(self) -> None:
        self.fresh_code()


class KioskUser(Configured, FastHttpUser):
    """The phone at the hospital, through the hospital's systems: book a slot for a card
    (full slots and a second booking in the session are refused, as they should be), poll
    the card's place on the board, read its reports."""

    weight = mix.DEFAULT["kiosk"]

    def on_start(self) -> None:
        self.rng = random.Random()
        self.hospital = self.seed.hospital
        self.auth = {"Authorization": f"Bearer {self.hospital['token']}",
                     "Content-Type": "application/json"}

    @task
    def visit(self) -> None:
        card = self.rng.choice(self.seed.cards)
        sid = self.hospital["session_id"]
        body = {"session_id": sid, "slot": self.rng.choice(self.hospital["slots"]),
                "card_id": card}
        with self.client.post("/hospital/v1/bookings", json=body, headers=self.auth,
                              name="book", catch_response=True) as resp:
            booked = answer_of(resp) if resp.status_code == 201 else None
            if booked is not None:
                BOOKING_IDS.append(booked["booking_id"])
            elif resp.status_code == 201:
                pass  # cut short: a failure already
            elif resp.status_code == 409 and error_code(resp) in (
                    "ALREADY_BOOKED", "SLOT_FULL"):
                resp.success()
            else:
                resp.failure(why(resp))
        with self.client.get(f"/hospital/v1/sessions/{sid}/queue?card_id={card}",
                             headers=self.auth, name="queue place",
                             catch_response=True) as resp:
            if resp.status_code == 404 and error_code(resp) == "NOT_WAITING":
                resp.success()  # booked, not checked in yet
            elif resp.status_code != 200:
                resp.failure(why(resp))
        self.client.get(f"/hospital/v1/reports?card_id={card}", headers=self.auth,
                        name="reports")


class TrivialUser(Configured, FastHttpUser):
    """The trivial route of the same app, measured the same way (capacity baseline):
    ``/healthz``, the fast path's floor, or ``/ping``, through the framework's routing."""

    weight = 1

    @task
    def trivial(self) -> None:
        route = self.environment.parsed_options.ehc_workload  # set on workers too
        self.client.get(f"/{route}", name=route)


class ConfiguredShape(LoadTestShape):
    """The shape ``--ehc-shape`` asks for (see loadtests/shapes.py); with ``constant``
    the test starts without a shape (Locust's ``-u`` and ``-t``)."""

    use_common_options = True  # -t still ends the test; -u and -r are the shape's business
    users_at: shapes.Shape = staticmethod(lambda t: None)  # set in configure()

    def tick(self) -> tuple[int, float] | None:
        users = self.users_at(self.get_run_time())
        return None if users is None else (users, max(1, users))


KINDS: dict[str, type[Configured]] = {"terminal": TerminalUser, "fused": FusedUser,
                                      "settle": SettleUser, "app": AppUser,
                                      "kiosk": KioskUser, "retail": RetailUser}


def seeded_for(kind: str, seed: Seed) -> bool:
    """Whether the seed holds what a kind of user needs."""
    needs = {"fused": seed.fused_cards, "settle": seed.fused_cards, "kiosk": seed.hospital,
             "retail": seed.fused_cards and seed.tills}
    return bool(needs.get(kind, True))


@events.init.add_listener
def configure(environment: Any, **_kw: Any) -> None:
    """The mix and the shape, decided where users are dispatched (master or local run;
    workers spawn the classes they are told, with the master's options)."""
    if isinstance(environment.runner, WorkerRunner):
        return
    opts = environment.parsed_options
    if opts.ehc_workload in TRIVIAL:
        chosen: list[type] = [TrivialUser]
    else:
        weights = mix.decode(opts.ehc_weights)
        chosen = []
        for kind, cls in KINDS.items():
            if weights[kind] > 0 and seeded_for(kind, load_seed(opts.ehc_seed_file)):
                cls.weight = weights[kind]
                chosen.append(cls)
    environment.user_classes[:] = chosen
    if opts.ehc_shape == "constant":
        environment.shape_class = None
        return
    ConfiguredShape.users_at = staticmethod(shapes.from_options(
        opts.ehc_shape, users=opts.ehc_shape_users, duration_s=opts.ehc_shape_duration_s,
        demand_csv=Path(opts.ehc_demand_csv) if opts.ehc_demand_csv else None,
        compress=opts.ehc_compress, scale=opts.ehc_scale,
        rate_per_user=opts.ehc_rate_per_user or 1.0))
    if environment.shape_class is None:
        environment.shape_class = ConfiguredShape()
        environment.shape_class.runner = environment.runner


@events.quitting.add_listener
def slo_gate(environment, **_kw) -> None:
    """Set the exit code explicitly, pass or fail (Locust's own default is 1 on any
    failure, whatever the SLO says)."""
    opts = environment.parsed_options
    out = opts.ehc_load_out
    if out:  # every process: the usage records its successful verifies reported
        Path(out, f"record-ids-{os.getpid()}.json").write_text(json.dumps(RECORD_IDS))
        Path(out, f"booking-ids-{os.getpid()}.json").write_text(json.dumps(BOOKING_IDS))
    if isinstance(environment.runner, WorkerRunner):
        return
    hot = ((opts.ehc_workload,), "GET") if opts.ehc_workload in TRIVIAL else (HOT, "POST")
    verdict = evaluate(environment.stats, options.slo_of(opts), *hot)
    environment.process_exit_code = 0 if verdict["passed"] else 1
    if out:
        Path(out, "slo.json").write_text(json.dumps(verdict, indent=1))
    role = "master" if isinstance(environment.runner, MasterRunner) else "local"
    print(f"SLO gate ({role}): {'PASSED' if verdict['passed'] else 'FAILED'} "
          f"{json.dumps(verdict['checks'])}")
