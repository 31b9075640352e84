"""The payment gateway assembled, and its notifier: when a pending payment reaches its
outcome, the merchant's system is told (it then asks, rather than trusting the message)."""

from __future__ import annotations

import asyncio
import logging

from ..common.db import make_engine
from ..common.peer import PeerClient
from ..common.settings import Settings
from .gateway import Behaviour, Gateway
from .tables import metadata


class MerchantNotifier(PeerClient):
    name = "socialcard"

    async def notify(self, order_id: str) -> None:
        await self.post("/essc/v1/payments/notify", {"order_id": order_id})


def build_payment(settings: Settings) -> Gateway:
    return Gateway(make_engine(settings, "payment", metadata), Behaviour())


async def notify_forever(gw: Gateway, notifier: MerchantNotifier | None,
                         interval_s: float = 0.5) -> None:
    log = logging.getLogger("ehc.payment")
    while True:
        await asyncio.sleep(interval_s)
        try:
            for order_id in gw.resolve_due():
                if notifier is not None:
                    await notifier.notify(order_id)
        except Exception as exc:  # a lost notification is recovered by the merchant's query
            log.warning("payment notification failed: %s", type(exc).__name__)
