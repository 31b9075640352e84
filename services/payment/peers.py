"""The payment gateway's peer: the merchant's system (the e-SSC side), told when a pending
payment reaches its outcome (it then asks, rather than trusting the message)."""

from __future__ import annotations

import asyncio
import logging

from ..common.peer import PeerClient
from .gateway import Gateway


class MerchantNotifier(PeerClient):
    name = "socialcard"

    async def notify(self, order_id: str) -> None:
        await self.post("/essc/v1/payments/notify", {"order_id": order_id})


async def notify_forever(gw: Gateway, notifier: MerchantNotifier | None,
                         interval_s: float = 0.5) -> None:
    log = logging.getLogger("ehc.payment")
    while True:
        await asyncio.sleep(interval_s)
        try:
            for order_id in await asyncio.to_thread(gw.resolve_due):  # off the loop
                if notifier is not None:
                    await notifier.notify(order_id)
        except Exception as exc:  # a lost notification is recovered by the merchant's query
            log.warning("payment notification failed: %s", type(exc).__name__)
