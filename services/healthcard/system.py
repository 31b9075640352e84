"""The card-management system assembled: store, keys, services and the registry peer."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from ..common.crypto import hmac_sm3
from ..common.db import make_engine
from ..common.pii import FieldCipher
from ..common.settings import Settings
from .callers import Callers
from .cards import CardService
from .keystore import KeyStore
from .peers import RegistryClient
from .tables import metadata
from .verify import Verifier


@dataclass
class HealthcardSystem:
    settings: Settings
    engine: Engine
    keystore: KeyStore
    cards: CardService
    verifier: Verifier
    callers: Callers
    registry: RegistryClient


def build_healthcard(settings: Settings, master: bytes, registry: RegistryClient,
                     cipher: FieldCipher) -> HealthcardSystem:
    engine = make_engine(settings, "healthcard", metadata)
    keystore = KeyStore(engine, master)
    empi_salt = hmac_sm3(master, b"ehc-empi-salt")
    return HealthcardSystem(
        settings=settings,
        engine=engine,
        keystore=keystore,
        cards=CardService(engine, keystore, cipher, empi_salt),
        verifier=Verifier(engine, keystore, cipher, settings),
        callers=Callers(engine, cipher, max_age_s=settings.signature_max_age_s,
                        terminal_rate=settings.rate_limit_terminal_per_s,
                        app_rate=settings.rate_limit_app_per_s),
        registry=registry,
    )
