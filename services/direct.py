"""Peers called directly when both systems run in this process.

The card systems reach each other through HTTP clients (``services/*/peers.py``); when the
e-SSC system is mounted in the same app as the EHC system, the hot call between them (the
insurance identity of a fused verification) goes straight to the e-SSC system's own
function behind the same client interface, not through an emulated HTTP exchange. What the
e-SSC side's peer route does around that function is done here too: its outage drill
(delay, unavailable: the caller sees the same ``503`` as over HTTP) and its refusals, as
the same codes. The other, rarer peer calls still go through the in-process transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .common.errors import ServiceError
from .common.peer import PeerUnavailable
from .healthcard.peers import SocialcardClient


class DirectSocialcard(SocialcardClient):
    def __init__(self, base_url: str, token: str, app: Any,
                 system: Callable[[], Any]) -> None:
        super().__init__(base_url, token, app=app)
        self._system = system  # the e-SSC system, once the app has built it

    async def insurance_identity(self, ssc_card_no: str, institution_code: str,
                                 timeout_s: float) -> dict[str, Any]:
        sc = self._system()
        try:
            await sc.faults.apply()  # the peer route's drill
        except ServiceError as exc:
            raise PeerUnavailable(self.name, f"HTTP {exc.status}") from exc
        return await sc.fusion.identity_now(ssc_card_no, institution_code)
