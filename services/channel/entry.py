"""The unified entry assembled: sessions, the residents' cards, and its peers."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from ..common.crypto import sm3_hex
from ..common.cst import utc_now
from ..common.db import make_engine
from ..common.errors import ServiceError, Unauthenticated
from ..common.pii import FieldCipher
from ..common.settings import Settings
from ..common.shared_store import open_store
from .login import Identity, Limits, Login, RegistryPeer, SmsPeer
from .peers import HospitalPeer, OperatorClient, SignedAppClient
from .tables import credentials, metadata, residents, sessions, shared_events

SESSION_TTL = timedelta(hours=8)
APP_NAME = "浙里办 unified entry"


@dataclass
class Session:
    id_type: str
    id_number: str
    id_digest: str
    name: str
    phone: str | None


@dataclass
class ChannelSystem:
    engine: Engine
    cipher: FieldCipher
    login: Login
    ehc: SignedAppClient
    essc: SignedAppClient
    operators: dict[str, OperatorClient]
    hospital: HospitalPeer | None = None  # the kiosk routes' outpatient service
    _ready: asyncio.Lock = field(default_factory=asyncio.Lock)
    _registered: bool = False

    # ------------------------------------------------------------------ credentials
    async def ready(self) -> None:
        """Register the entry as a channel app of both card systems, once."""
        if self._registered:
            return
        async with self._ready:
            if not self._registered:
                key, secret = await self._credentials()
                self.ehc.use(key, secret)
                self.essc.use(key, secret)
                self._registered = True

    async def _credentials(self) -> tuple[str, str]:
        with self.engine.connect() as conn:
            row = conn.execute(select(credentials)
                               .where(credentials.c.name == "card-systems")).first()
        if row is not None:
            return row.app_key, self.cipher.decrypt(row.secret_enc)
        made = await self.operators["healthcard"].post(
            "/ehc/v1/admin/channel-apps", {"name": APP_NAME, "strong_realname": True})
        await self.operators["socialcard"].post("/essc/v1/admin/channel-apps", {
            "name": APP_NAME, "app_key": made["app_key"], "app_secret": made["app_secret"],
            "strong_realname": True})
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(credentials).values(
                    name="card-systems", app_key=made["app_key"],
                    secret_enc=self.cipher.encrypt(made["app_secret"])))
        except IntegrityError:
            return await self._credentials()  # another worker registered first
        return made["app_key"], made["app_secret"]

    # ------------------------------------------------------------------ sessions
    def open_session(self, who: Identity) -> dict[str, Any]:
        """A bearer session for an identity the strong login has just proved."""
        token = secrets.token_urlsafe(32)
        c = self.cipher
        with self.engine.begin() as conn:
            conn.execute(insert(sessions).values(
                token_digest=sm3_hex(token), id_type=who.id_type,
                id_digest=c.digest(who.id_number), id_number_enc=c.encrypt(who.id_number),
                name_enc=c.encrypt(who.name), phone_enc=c.encrypt(who.phone),
                expires_at=utc_now() + SESSION_TTL))
        return {"token": token, "expires_in_s": int(SESSION_TTL.total_seconds())}

    def session(self, token: str) -> Session:
        with self.engine.connect() as conn:
            row = conn.execute(select(sessions).where(
                sessions.c.token_digest == sm3_hex(token))).first()
        if row is None or row.expires_at < utc_now():
            raise Unauthenticated("SESSION_INVALID", "log in again")
        c = self.cipher
        return Session(row.id_type, c.decrypt(row.id_number_enc), row.id_digest,
                       c.decrypt(row.name_enc),
                       c.decrypt(row.phone_enc) if row.phone_enc else None)

    # ------------------------------------------------------------------ residents' cards
    def cards_of(self, s: Session) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(residents)
                                .where(residents.c.id_digest == s.id_digest)).first()

    def state_of(self, s: Session) -> dict[str, Any]:
        """The resident's cards as the entry remembers them (IDs and region, or None)."""
        row = self.cards_of(s)
        return {"ehc_card_id": row.ehc_card_id if row else None,
                "ssc_card_no": row.ssc_card_no if row else None,
                "region": row.region if row else None}

    async def binding_of(self, ehc_card_id: str | None) -> dict[str, Any] | None:
        """The EHC's binding as the EHC system holds it, or None when not bound."""
        if not ehc_card_id:
            return None
        try:
            return await self.ehc.signed("GET", f"/ehc/v1/cards/{ehc_card_id}/binding")
        except ServiceError as exc:
            if exc.code == "BINDING_NOT_FOUND":
                return None
            raise

    def remember(self, s: Session, **values: str | None) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(residents.update().where(residents.c.id_digest == s.id_digest)
                                .values(**values)).rowcount
            if not done:
                conn.execute(insert(residents).values(id_digest=s.id_digest, **values))



def build_channel(settings: Settings, cipher: FieldCipher,
                  urls: dict[str, tuple[str | None, Any]], service_token: str,
                  admin_token: str) -> ChannelSystem:
    def url(name: str) -> tuple[str, Any]:
        u, app = urls[name]
        assert u is not None
        return u, app

    engine = make_engine(settings, "channel", metadata)
    login = Login(engine, cipher, open_store(settings, "channel", engine,
                                             shared_events),
                  RegistryPeer(*url("registry")[:1], service_token, app=url("registry")[1]),
                  SmsPeer(*url("sms")[:1], service_token, app=url("sms")[1]),
                  Limits.of(settings))
    return ChannelSystem(
        engine=engine, cipher=cipher, login=login,
        ehc=SignedAppClient("healthcard", *url("healthcard")),
        essc=SignedAppClient("socialcard", *url("socialcard")),
        operators={name: OperatorClient(*url(name)[:1], admin_token, app=url(name)[1])
                   for name in ("healthcard", "socialcard")},
        hospital=None if urls.get("hospital", (None, None))[0] is None else
        HospitalPeer(*url("hospital")[:1], service_token, app=url("hospital")[1]),
    )
