"""Strong real-name login (强实名认证): identity and name, then a one-time code sent by
SMS to the phone the population registry holds.

What an attacker who knows an ID number and a name learns: nothing. Asking for a code
always answers the same (whether the name matches or the registry holds a phone), and
every failure of the second step is one ``LOGIN_REFUSED``. Guessing is bounded: five
tries per code, codes live five minutes, and the shared store (every worker alike)
throttles codes sent and tries made per identity and per client, answering 429 with
``Retry-After``."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, insert, select, update

from ..common.crypto import constant_time_equal, sm3_hex
from ..common.cst import utc_now
from ..common.errors import RateLimited, Unauthenticated
from ..common.peer import PeerClient
from ..common.pii import FieldCipher
from ..common.settings import Settings
from ..common.shared_store import SharedStore
from .tables import challenges

CODE_TTL = timedelta(minutes=5)
CODE_DIGITS = 6
TRIES_PER_CODE = 5


@dataclass(frozen=True)
class Limits:
    """(window s, count) of each shared throttle; the counts are the ``EHC_LOGIN_*``
    settings."""

    sends_per_identity: tuple[float, int]
    sends_per_client: tuple[float, int]
    tries_per_identity: tuple[float, int]  # beyond: locked for the window
    tries_per_client: tuple[float, int]

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls((600.0, settings.login_codes_per_identity),
                   (600.0, settings.login_codes_per_client),
                   (3600.0, settings.login_tries_per_identity),
                   (600.0, settings.login_tries_per_client))


class RegistryPeer(PeerClient):
    name = "registry"


class SmsPeer(PeerClient):
    name = "sms"


@dataclass(frozen=True)
class Identity:
    id_type: str
    id_number: str
    name: str
    phone: str


@dataclass
class Login:
    engine: Engine
    cipher: FieldCipher
    store: SharedStore
    registry: RegistryPeer
    sms: SmsPeer
    limits: Limits

    def _throttle(self, bucket: str, limit: tuple[float, int], code: str) -> None:
        window, count = limit
        wait = self.store.take(bucket, window, count)
        if wait:
            raise RateLimited(code, "too many login attempts; try again later",
                              headers={"Retry-After": str(max(1, math.ceil(wait)))})

    async def send_code(self, id_type: str, id_number: str, name: str,
                        client: str) -> dict:
        """Open a challenge; text its code to the registry's phone when the identity
        matches. The answer is the same either way."""
        id_digest = self.cipher.digest(id_number)
        self._throttle("login-send-client:" + client, self.limits.sends_per_client,
                       "LOGIN_THROTTLED")
        self._throttle("login-send-id:" + id_digest, self.limits.sends_per_identity,
                       "LOGIN_THROTTLED")
        contact = await self.registry.post("/registry/v1/contacts", {
            "id_type": id_type, "id_number": id_number, "name": name})
        phone = contact.get("phone")
        challenge_id = secrets.token_urlsafe(24)
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        c = self.cipher
        with self.engine.begin() as conn:
            conn.execute(insert(challenges).values(
                challenge_digest=sm3_hex(challenge_id), id_type=id_type, id_digest=id_digest,
                id_number_enc=c.encrypt(id_number), name_enc=c.encrypt(name),
                phone_enc=c.encrypt(phone) if phone else None,
                # no phone (or no match): a code nobody was sent, so every try fails alike
                code_digest=sm3_hex(challenge_id + (code if phone else secrets.token_hex(16))),
                tries=0, used=0, expires_at=utc_now() + CODE_TTL))
        if phone:
            await self.sms.post("/sms/v1/messages", {
                "phone": phone, "text": f"【浙里办】登录验证码 {code}，5分钟内有效，请勿告诉他人。"
                f" Your login code is {code} (valid 5 minutes)."})
        return {"challenge_id": challenge_id, "expires_in_s": int(CODE_TTL.total_seconds()),
                "delivery": "a code goes by SMS to the phone the registry holds for this "
                "identity, if the identity and name match"}

    def check_code(self, challenge_id: str, code: str, client: str) -> Identity:
        """The identity of a challenge whose code is right, used once; ``LOGIN_REFUSED``
        for every other outcome."""
        refused = Unauthenticated("LOGIN_REFUSED", "the code is wrong, expired or used up")
        self._throttle("login-try-client:" + client, self.limits.tries_per_client,
                       "LOGIN_THROTTLED")
        digest = sm3_hex(challenge_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(challenges)
                               .where(challenges.c.challenge_digest == digest)).first()
        if row is None:
            raise refused
        self._throttle("login-try-id:" + row.id_digest, self.limits.tries_per_identity,
                       "LOGIN_LOCKED")
        now = utc_now()
        with self.engine.begin() as conn:  # the try counts even when it fails
            counted = conn.execute(update(challenges).where(
                challenges.c.challenge_digest == digest, challenges.c.used == 0,
                challenges.c.tries < TRIES_PER_CODE, challenges.c.expires_at > now)
                .values(tries=challenges.c.tries + 1)).rowcount
        right = constant_time_equal(sm3_hex(challenge_id + code), row.code_digest)
        if not (counted and right and row.phone_enc):
            raise refused
        with self.engine.begin() as conn:  # used once, even by two racing requests
            if not conn.execute(update(challenges).where(
                    challenges.c.challenge_digest == digest, challenges.c.used == 0)
                    .values(used=1)).rowcount:
                raise refused
        c = self.cipher
        return Identity(row.id_type, c.decrypt(row.id_number_enc), c.decrypt(row.name_enc),
                        c.decrypt(row.phone_enc))
