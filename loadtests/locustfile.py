"""Locust workload of the card network: terminals scanning codes (the hot path), fused
codes answering both identities, settlements with their payments, and channel apps
refreshing codes, in a default mix or in the proportions of the twin's demand curve.

Configured by environment (``ehc loadtest`` sets it):
  EHC_SEED_FILE       seed file of ``ehc seed`` (terminals, app, cards, lost cards)
  EHC_BAD_SHARE       share of scans with a bad code (tampered, replayed, lost, expired)
  EHC_RATE_PER_USER   requests/s each user offers (constant throughput; 0 = as fast as it can)
  EHC_WEIGHTS         users of each kind, "terminal:6,fused:3,settle:1,app:1" (loadtests/mix.py)
  EHC_SHAPE, EHC_SHAPE_USERS, EHC_SHAPE_DURATION_S, EHC_DEMAND_CSV, EHC_COMPRESS, EHC_SCALE
  EHC_SLO_P95_MS, EHC_SLO_P99_MS, EHC_SLO_MAX_FAILURE_RATIO, EHC_SLO_MIN_RPS, EHC_LOAD_OUT
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from locust import LoadTestShape, constant, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

from loadtests import mix, shapes
from loadtests.slo import HOT, Slo, evaluate
from loadtests.workload import (
    BAD_KINDS,
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
from services.sdk import Step

SEED = Seed.load()
BAD_SHARE = float(os.environ.get("EHC_BAD_SHARE", "0.05"))
RATE = float(os.environ.get("EHC_RATE_PER_USER", "0"))
WEIGHTS = mix.decode(os.environ.get("EHC_WEIGHTS"))
LIMIT = int(os.environ.get("EHC_CODE_LIMIT", "3"))
EXPIRED_AFTER_S = float(os.environ.get("EHC_EXPIRED_AFTER_S", "95"))
WORKLOAD = os.environ.get("EHC_WORKLOAD", "scan")  # scan (terminals and apps) or ping
RECORD_IDS: list[int] = []  # usage records of the verifies this process counted as OK


def _wait():
    """Constant throughput per user (a fixed offered rate, no coordinated omission), or
    back to back when no rate is given."""
    return constant_throughput(RATE) if RATE > 0 else constant(0)


class CardUser(FastHttpUser):
    abstract = True
    wait_time = _wait()

    def on_start(self) -> None:
        self.rng = random.Random()
        self.app = channel_signer(SEED.app, str(self.host))

    def fresh_code(self, card_id: str | None = None, kind: str = "dynamic") -> str | None:
        card_id = card_id or self.rng.choice(SEED.cards)
        path, headers = qrcode_request(self.app, card_id, kind)
        name = "refresh code" if kind == "dynamic" else "refresh fused code"
        with self.client.get(path, headers=headers, name=name,
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} {resp.text[:80]}")
                return None
            return resp.json()["qr_text"]


class ScanningUser(CardUser):
    """A hospital terminal: it verifies the codes patients show."""

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        self.term = terminal_signer(self.rng.choice(SEED.terminals), str(self.host))

    def verify(self, qr_text: str, name: str, expect: str | None,
               step: int | None = None) -> dict | None:
        body, headers = verify_request(self.term, qr_text, self.rng, step)
        with self.client.post(VERIFY_PATH, data=body, headers=headers, name=name,  # type: ignore[arg-type]  # bytes are sent as is; the stub omits bytes
                              catch_response=True) as resp:
            if expect is None:
                if resp.status_code != 200:
                    resp.failure(f"{resp.status_code} {resp.text[:80]}")
                    return None
                answer = resp.json()
                if name in ("verify", "verify fused"):
                    RECORD_IDS.append(answer["usage_record_id"])
                return answer
            if resp.status_code == 200 or resp.json().get("code") != expect:
                resp.failure(f"expected {expect}, got {resp.status_code} {resp.text[:80]}")
            else:
                resp.success()
            return None


class TerminalUser(ScanningUser):
    """Each scan shows a fresh dynamic code and verifies it online; a share is bad."""

    abstract = WORKLOAD != "scan" or WEIGHTS["terminal"] == 0
    weight = max(WEIGHTS["terminal"], 1)

    def on_start(self) -> None:
        super().on_start()
        self.aged: list[tuple[float, str]] = []  # codes kept to be shown once expired

    @task
    def scan(self) -> None:
        if self.rng.random() < BAD_SHARE:
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
            old = [c for t, c in self.aged if now - t > EXPIRED_AFTER_S]
            if not old:
                kind = "tampered"  # nothing has expired yet this early in the test
            else:
                self.aged = [(t, c) for t, c in self.aged if c != old[0]]
                self.verify(old[0], "verify [expired]", BAD_KINDS["expired"])
                return
        if kind == "lost card":
            if not SEED.lost_cards:
                return
            self.verify(self.rng.choice(SEED.lost_cards) + ":1", "verify [lost card]",
                        BAD_KINDS["lost card"])
            return
        code = self.fresh_code()
        if code is None:
            return
        if kind == "tampered":
            self.verify(tamper(code), "verify [tampered]", BAD_KINDS["tampered"])
        else:  # replayed: use the code up to its limit, then once more
            for _ in range(LIMIT):
                self.verify(code, "verify", None)
            self.verify(code, "verify [replayed]", BAD_KINDS["replayed"])


class FusedUser(ScanningUser):
    """A resident of the online flow shows the fused code; the terminal gets both
    identities (the e-SSC side is asked within its timeout)."""

    abstract = WORKLOAD != "scan" or WEIGHTS["fused"] == 0 or not SEED.fused_cards
    weight = max(WEIGHTS["fused"], 1)

    @task
    def scan_fused(self) -> None:
        code = self.fresh_code(self.rng.choice(SEED.fused_cards), kind="fused")
        if code is not None:
            answer = self.verify(code, "verify fused", None)
            if answer is not None and answer.get("partial"):
                events.request.fire(request_type="CHECK", name="fused answered partial",
                                    response_time=0, response_length=0, exception=None)


class SettleUser(ScanningUser):
    """At the payment step: a fused scan gives the voucher token, then the fees are
    uploaded and settled (insurance split, the cash part through the payment gateway)."""

    abstract = WORKLOAD != "scan" or WEIGHTS["settle"] == 0 or not SEED.fused_cards
    weight = max(WEIGHTS["settle"], 1)

    @task
    def settle_visit(self) -> None:
        code = self.fresh_code(self.rng.choice(SEED.fused_cards), kind="fused")
        answer = code and self.verify(code, "verify fused", None, step=Step.PAYMENT)
        token = answer and (answer.get("essc") or {}).get("ec_token")
        if not token:
            return  # the e-SSC side answered partial: the visit pays at the window
        body, headers = keyed_request(self.term, "/essc/v1/settlements",
                                      {"ec_token": token, "items": FEES})
        with self.client.post("/essc/v1/settlements", data=body, headers=headers,  # type: ignore[arg-type]  # bytes are sent as is; the stub omits bytes
                              name="settle upload", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} {resp.text[:80]}")
                return
            sid = resp.json()["settlement_id"]
        path = f"/essc/v1/settlements/{sid}/settle"
        body, headers = keyed_request(self.term, path, None)
        with self.client.post(path, data=body, headers=headers, name="settle",  # type: ignore[arg-type]  # bytes are sent as is; the stub omits bytes
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} {resp.text[:80]}")
            elif resp.json()["state"] not in ("settled", "awaiting_confirmation"):
                resp.failure(f"settlement ended {resp.json()['state']}")


class AppUser(CardUser):
    """A resident with the app open: the code refreshes, nobody scans it."""

    abstract = WORKLOAD != "scan" or WEIGHTS["app"] == 0
    weight = max(WEIGHTS["app"], 1)

    @task
    def refresh(self) -> None:
        self.fresh_code()


class PingUser(FastHttpUser):
    """The trivial route of the same app, measured the same way (capacity baseline)."""

    abstract = WORKLOAD != "ping"
    wait_time = _wait()

    @task
    def ping(self) -> None:
        self.client.get("/ping", name="ping")


if os.environ.get("EHC_SHAPE", "constant") != "constant":

    class ConfiguredShape(LoadTestShape):
        """The shape ``ehc loadtest --shape`` asked for (see loadtests/shapes.py)."""

        users_at = shapes.from_options(
            os.environ["EHC_SHAPE"], users=int(os.environ.get("EHC_SHAPE_USERS", "10")),
            duration_s=float(os.environ.get("EHC_SHAPE_DURATION_S", "30")),
            demand_csv=Path(os.environ["EHC_DEMAND_CSV"])
            if os.environ.get("EHC_DEMAND_CSV") else None,
            compress=float(os.environ.get("EHC_COMPRESS", "60")),
            scale=float(os.environ.get("EHC_SCALE", "1")),
            rate_per_user=RATE or 1.0)

        def tick(self):
            users = type(self).users_at(self.get_run_time())
            return None if users is None else (users, max(1, users))


@events.quitting.add_listener
def slo_gate(environment, **_kw) -> None:
    """Set the exit code explicitly, pass or fail (Locust's own default is 1 on any
    failure, whatever the SLO says)."""
    out = os.environ.get("EHC_LOAD_OUT")
    if out:  # every process: the usage records its successful verifies reported
        Path(out, f"record-ids-{os.getpid()}.json").write_text(json.dumps(RECORD_IDS))
    if isinstance(environment.runner, WorkerRunner):
        return
    hot = (("ping",), "GET") if WORKLOAD == "ping" else (HOT, "POST")
    verdict = evaluate(environment.stats, Slo.from_env(), *hot)
    environment.process_exit_code = 0 if verdict["passed"] else 1
    if out:
        Path(out, "slo.json").write_text(json.dumps(verdict, indent=1))
    role = "master" if isinstance(environment.runner, MasterRunner) else "local"
    print(f"SLO gate ({role}): {'PASSED' if verdict['passed'] else 'FAILED'} "
          f"{json.dumps(verdict['checks'])}")
