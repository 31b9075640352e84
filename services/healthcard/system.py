"""The card-management system assembled: store, keys, services and the registry peer."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import ClassVar

from sqlalchemy import Engine

from ..common.cards.audit import chain_key
from ..common.cards.callers import Callers
from ..common.cards.faults import Faults
from ..common.cards.feeds import apply_deaths
from ..common.cards.seals import Sealer, open_sealer
from ..common.cards.side_routes import CardSide
from ..common.cards.system_key import load_or_create
from ..common.crypto import hmac_sm3
from ..common.db import Export, make_engine
from ..common.pii import FieldCipher
from ..common.settings import Settings
from ..common.shared_store import open_store
from . import usage
from .cards import CardService
from .fusion import Fusion
from .keystore import KeyStore
from .peers import RegistryClient, SocialcardClient
from .tables import (
    EXPORTS,
    audit_heads,
    caller_registry,
    metadata,
    received_seals,
    sync_cursors,
    system_keys,
)
from .verify import Verifier


@dataclass
class HealthcardSystem(CardSide):
    usage: ClassVar[ModuleType] = usage  # its usage-record queries
    settings: Settings
    engine: Engine
    keystore: KeyStore
    cards: CardService
    verifier: Verifier
    callers: Callers
    registry: RegistryClient
    fusion: Fusion | None  # None when no e-SSC system is configured
    sealer: Sealer  # its audit chains' key and the seals of their heads
    faults: Faults = field(default_factory=Faults)  # outage drills on codes and scans
    exports: ClassVar[dict[str, Export]] = EXPORTS  # what the data layer may read

    async def pull_deaths(self) -> int:
        """Cancel the cards of the deaths registered since the last pull."""
        return await apply_deaths(self.engine, sync_cursors, self.registry,
                                  self.cards.cancel_deceased)


def build_healthcard(settings: Settings, master: bytes, registry: RegistryClient,
                     cipher: FieldCipher,
                     social: SocialcardClient | None = None) -> HealthcardSystem:
    engine = make_engine(settings, "healthcard", metadata,
                         {"chain_key": chain_key(master, "ehc")})  # data migrations
    sealer = open_sealer("ehc", engine, audit_heads, received_seals, system_keys, master,
                         cipher, settings.var_dir)
    keystore = KeyStore(engine, master)
    empi_salt = hmac_sm3(master, b"ehc-empi-salt")
    cards = CardService(engine, keystore, cipher, empi_salt)
    fusion = None if social is None else Fusion(
        engine, cards, social, load_or_create(engine, system_keys, cipher),
        settings.peer_timeout_s, registry)
    return HealthcardSystem(
        settings=settings,
        engine=engine,
        keystore=keystore,
        cards=cards,
        verifier=Verifier(engine, keystore, cipher, settings, sealer.chain_key),
        callers=Callers(engine, caller_registry, cipher, max_age_s=settings.signature_max_age_s,
                        store=open_store(settings, "healthcard", engine,
                                         caller_registry.shared_events),
                        terminal_rate=settings.rate_limit_terminal_per_s,
                        app_rate=settings.rate_limit_app_per_s),
        registry=registry,
        fusion=fusion,
        sealer=sealer,
    )
