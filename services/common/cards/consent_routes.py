"""The consent routes both card systems offer (each includes :data:`router` under its
prefix with ``Depends(ConsentOf(system))``): the unified entry asks for an authorisation
code for another app, lists and revokes the apps holding a card; an app exchanges a code
it was given."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..errors import Forbidden, NotFound, error_responses
from .callers import ChannelApp
from .consent import Consent
from .routes import APP_AUTH, INVALID, Strict, SystemDependency, signed_by

APP_KEY = r"^app_[0-9a-f]{16}$"
ENTRY_ONLY = (403, "CONSENT_ENTRY_ONLY", "only the unified entry, holding the card for its "
              "logged-in resident, manages grants")
UNHELD = (404, "CARD_NOT_FOUND", "no such card for this app")


class ConsentOf(SystemDependency):
    """Names the system whose cards the consent routes act on."""

    def __call__(self, request: Request) -> None:
        system = self.of(request)
        request.state.consent = system.consent
        request.state.callers = system.callers


async def signed_app(request: Request) -> ChannelApp:
    return await signed_by(request, request.state.callers.authenticate_app)


def system_consent(request: Request) -> Consent:
    return request.state.consent


App = Annotated[ChannelApp, Depends(signed_app)]
Grants = Annotated[Consent, Depends(system_consent)]


class GrantRequest(Strict):
    app_key: str = Field(pattern=APP_KEY, description="the app the resident lets in")
    scope: Literal["codes", "manage"] = "codes"


class GrantCode(BaseModel):
    code: str = Field(description="hand it to the app once; it expires in five minutes")
    app_key: str
    scope: str
    expires_in_s: int


class ExchangeRequest(Strict):
    code: str = Field(min_length=16, max_length=64)


class Grant(BaseModel):
    app_key: str
    scope: str
    granted_at: str | None = Field(description="null: the app opened or claimed the card")


def entry_holding(consent: Consent, card: str, app: ChannelApp) -> None:
    if not app.strong_realname:
        raise Forbidden(*ENTRY_ONLY[1:])
    consent.refuse_unheld(card, app.app_key, manage=True)


router = APIRouter(tags=["channel"])


@router.post("/cards/{card}/grants", status_code=201, response_model=GrantCode,
             summary="The resident lets another app reach this card: an authorisation code "
             "for that app and scope (the unified entry asks, for its logged-in resident)",
             responses=error_responses(*APP_AUTH, INVALID, ENTRY_ONLY, UNHELD,
                                       (404, "APP_NOT_FOUND", "no such active app")))
def grant(card: str, body: GrantRequest, app: App, consent: Grants, request: Request) -> dict:
    entry_holding(consent, card, app)
    if request.state.callers.app(body.app_key) is None:
        raise NotFound("APP_NOT_FOUND", "no such active channel app")
    return consent.issue(card, body.app_key, body.scope)


@router.get("/cards/{card}/grants", response_model=list[Grant],
            summary="The apps that hold this card besides the entry, with their scope",
            responses=error_responses(*APP_AUTH, ENTRY_ONLY, UNHELD))
def grants(card: str, app: App, consent: Grants) -> list[dict]:
    entry_holding(consent, card, app)
    return consent.grants(card, except_app=app.app_key)


@router.delete("/cards/{card}/grants/{app_key}", status_code=204,
               summary="Revoke an app's access to this card (the resident's choice)",
               responses=error_responses(*APP_AUTH, ENTRY_ONLY, UNHELD,
                                         (404, "GRANT_NOT_FOUND", "the app holds no access")))
def revoke(card: str, app_key: str, app: App, consent: Grants) -> Response:
    entry_holding(consent, card, app)
    if app_key == app.app_key:
        raise Forbidden("CONSENT_ENTRY_ONLY", "the entry keeps the cards it holds")
    consent.revoke(card, app_key)
    return Response(status_code=204)


@router.post("/grants/exchange",
             summary="An app exchanges the authorisation code the resident gave it for "
             "access to the card (once, for itself only)",
             responses=error_responses(*APP_AUTH, INVALID,
                                       (422, "GRANT_CODE_INVALID",
                                        "unknown, expired, used or for another app")))
def exchange(body: ExchangeRequest, app: App, consent: Grants) -> dict:
    return consent.exchange(body.code, app.app_key)
