"""The e-SSC system's peer over HTTP: the EHC card-management system."""

from __future__ import annotations

from typing import Any

from ..common.cards.seals import SealExchange
from ..common.peer import PeerClient


class HealthcardClient(SealExchange):
    name = "healthcard"
    prefix = "/ehc/v1"

    async def signing_key(self) -> str:
        return (await self.get("/ehc/v1/peer/signing-key"))["public_key"]

    async def usage_records(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self.get("/ehc/v1/peer/usage-records",
                              {"after_id": after_id, "limit": limit})


class PaymentClient(PeerClient):
    """The aggregated payment gateway, for the cash part of settlements."""

    name = "payment"

    async def pay(self, order_id: str, merchant: str, channel: str, amount_fen: int,
                  timeout_s: float) -> dict[str, Any]:
        return await self.post("/pay/v1/payments", {
            "order_id": order_id, "merchant": merchant, "channel": channel,
            "amount_fen": amount_fen}, timeout_s=timeout_s)

    async def query(self, order_id: str) -> dict[str, Any]:
        return await self.get(f"/pay/v1/payments/{order_id}")

    async def refund(self, order_id: str) -> dict[str, Any]:
        return await self.post(f"/pay/v1/payments/{order_id}/refund", {})

    async def statement(self, day: str) -> list[dict[str, Any]]:
        return await self.get("/pay/v1/statements", {"date": day})
