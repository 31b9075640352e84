"""The e-SSC system assembled: store, cards, callers, fusion and its EHC peer."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import ClassVar

from sqlalchemy import Engine

from ..common.cards.audit import chain_key
from ..common.cards.callers import Callers
from ..common.cards.faults import Faults
from ..common.cards.feeds import CivilAffairs, apply_deaths
from ..common.cards.idempotency import Idempotency
from ..common.cards.seals import Sealer, open_sealer
from ..common.cards.side_routes import CardSide
from ..common.cards.system_key import load_or_create
from ..common.crypto import hmac_sm3
from ..common.db import Export, make_engine
from ..common.errors import Unavailable
from ..common.pii import FieldCipher
from ..common.settings import Settings
from ..common.shared_store import open_store
from . import usage
from .cards import SocialCards
from .fusion import SocialFusion
from .peers import HealthcardClient, PaymentClient
from .policy import load_policies
from .settlement import Settlements
from .tables import (
    EXPORTS,
    audit_heads,
    caller_registry,
    idempotency,
    metadata,
    received_seals,
    sync_cursors,
    system_keys,
)


@dataclass
class SocialcardSystem(CardSide):
    usage: ClassVar[ModuleType] = usage  # its usage-record queries
    settings: Settings
    engine: Engine
    cards: SocialCards
    callers: Callers
    fusion: SocialFusion
    settlements: Settlements
    idempotency: Idempotency
    sealer: Sealer  # its audit chains' key and the seals of their heads
    faults: Faults = field(default_factory=Faults)
    civil: CivilAffairs | None = None  # the registry's deaths (None: no registry here)
    exports: ClassVar[dict[str, Export]] = EXPORTS  # what the data layer may read

    async def pull_deaths(self) -> int:
        """Cancel the e-SSC cards (and their uncommitted visits) of the deaths registered
        since the last pull."""
        if self.civil is None:
            raise Unavailable("REGISTRY_NOT_CONFIGURED", "no registry configured")
        return await apply_deaths(self.engine, sync_cursors, self.civil,
                                  self.cards.cancel_deceased)


def build_socialcard(settings: Settings, master: bytes, cipher: FieldCipher,
                     ehc: HealthcardClient, payment: PaymentClient | None,
                     civil: CivilAffairs | None = None) -> SocialcardSystem:
    engine = make_engine(settings, "socialcard", metadata,
                         {"chain_key": chain_key(master, "essc")})  # data migrations
    sealer = open_sealer("essc", engine, audit_heads, received_seals, system_keys, master,
                         cipher, settings.var_dir)
    cards = SocialCards(engine, cipher, hmac_sm3(master, b"essc-code-key")[:16],
                        settings.dynamic_code_validity_s, sealer.chain_key)
    return SocialcardSystem(
        settings=settings, engine=engine, cards=cards,
        callers=Callers(engine, caller_registry, cipher, max_age_s=settings.signature_max_age_s,
                        store=open_store(settings, "socialcard", engine,
                                         caller_registry.shared_events),
                        terminal_rate=settings.rate_limit_terminal_per_s,
                        app_rate=settings.rate_limit_app_per_s),
        fusion=SocialFusion(engine, cards, ehc, load_or_create(engine, system_keys, cipher)),
        settlements=Settlements(engine, load_policies(), payment, settings.payment_timeout_s,
                                settings.confirm_first_retry_s,
                                settings.confirm_max_attempts, sealer.chain_key),
        idempotency=Idempotency(engine, idempotency),
        sealer=sealer,
        civil=civil,
    )
