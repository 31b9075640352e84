"""The card-management system's peers over HTTP: the registry and the e-SSC system."""

from __future__ import annotations

from typing import Any

from ..common.cards.feeds import CivilAffairs
from ..common.cards.seals import SealExchange


class RegistryClient(CivilAffairs):
    """Real-name checks, births, and (inherited) the feed of deaths."""

    async def realname_check(self, id_type: str, id_number: str, name: str) -> str:
        body = await self.post(
            "/registry/v1/realname-checks",
            {"id_type": id_type, "id_number": id_number, "name": name},
        )
        return body["result"]

    async def realname_checks(self, people: list[dict[str, Any]]) -> list[str]:
        """One result per person (match, no_match, unknown, invalid)."""
        body = await self.post("/registry/v1/realname-checks:batch", {"checks": [
            {"id_type": p["id_type"], "id_number": p["id_number"], "name": p["name"]}
            for p in people]}, timeout_s=60.0)
        return body["results"]

    async def birth_check(self, birth_cert_no: str, name: str, guardian_id_number: str) -> str:
        body = await self.post("/registry/v1/births:check", {
            "birth_cert_no": birth_cert_no, "name": name,
            "guardian_id_number": guardian_id_number})
        return body["result"]

    async def birth_id(self, birth_cert_no: str) -> str | None:
        return (await self.get(f"/registry/v1/births/{birth_cert_no}/id-number"))["id_number"]


class SocialcardClient(SealExchange):
    name = "socialcard"
    prefix = "/essc/v1"

    async def signing_key(self) -> str:
        return (await self.get("/essc/v1/peer/signing-key"))["public_key"]

    async def submit_bindings(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.post("/essc/v1/peer/bindings:batch", payload, timeout_s=60.0)

    async def bindings(self, after: str, limit: int) -> list[dict[str, Any]]:
        return await self.get("/essc/v1/peer/bindings", {"after": after, "limit": limit})

    async def proof(self, binding_id: str) -> dict[str, Any]:
        return await self.get(f"/essc/v1/peer/bindings/{binding_id}")

    async def insurance_identity(self, ssc_card_no: str, institution_code: str,
                                 timeout_s: float) -> dict[str, Any]:
        return await self.post("/essc/v1/peer/identities", {
            "ssc_card_no": ssc_card_no, "institution_code": institution_code},
            timeout_s=timeout_s)

    async def holders(self, after: str, limit: int,
                      before: str | None = None) -> list[dict[str, Any]]:
        """Issued e-SSC holders never bound to an EHC, by card number in (after, before)."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if before:
            params["before"] = before
        return await self.get("/essc/v1/peer/holders", params)

    async def usage_records(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self.get("/essc/v1/peer/usage-records",
                              {"after_id": after_id, "limit": limit})
