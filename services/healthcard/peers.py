"""The card-management system's view of the population registry (over HTTP)."""

from __future__ import annotations

from ..common.peer import PeerClient


class RegistryClient(PeerClient):
    name = "registry"

    async def realname_check(self, id_type: str, id_number: str, name: str) -> str:
        body = await self.post(
            "/registry/v1/realname-checks",
            {"id_type": id_type, "id_number": id_number, "name": name},
        )
        return body["result"]
