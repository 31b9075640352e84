"""The e-SSC system's peer over HTTP: the EHC card-management system."""

from __future__ import annotations

from typing import Any

from ..common.peer import PeerClient


class HealthcardClient(PeerClient):
    name = "healthcard"

    async def signing_key(self) -> str:
        return (await self.get("/ehc/v1/peer/signing-key"))["public_key"]

    async def usage_records(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self.get("/ehc/v1/peer/usage-records",
                              {"after_id": after_id, "limit": limit})
