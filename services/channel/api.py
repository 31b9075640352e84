"""HTTP API of the unified entry (bearer session of a logged-in resident) and its H5 page.

By the resident's identity the entry grants an EHC, an e-SSC, or, when both exist and
are bound, the fused card: one code for health and insurance services."""

import io
from pathlib import Path
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..common.cards.consent_routes import GrantRequest
from ..common.cards.idcard import mask_name, parse_resident_id, refuse_invalid_id
from ..common.cards.routes import INVALID
from ..common.errors import Conflict, NotFound, ServiceError, error_responses
from .deps import Channel, Resident
from .entry import ChannelSystem, Session
from .schemas import Challenge, Code, CodeRequest, HandoffRequest, LoginAnswer, LoginRequest

PAGE = Path(__file__).with_name("page.html")
SESSION = [(401, "SESSION_INVALID", "no or expired session token")]
DOWN = [(503, "HEALTHCARD_UNAVAILABLE", "EHC system did not answer"),
        (503, "SOCIALCARD_UNAVAILABLE", "e-SSC system did not answer")]


def render_svg(text: str) -> str:
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="svg", scale=4, xmldecl=False)
    return buf.getvalue().decode()


router = APIRouter(prefix="/channel")


@router.get("/", response_class=HTMLResponse, tags=["public"],
            summary="The H5 page: log in, claim, bind, show the refreshing code")
def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


THROTTLED = (429, "LOGIN_THROTTLED", "too many codes or tries from this client or for "
             "this identity (Retry-After)")


def client_of(request: Request) -> str:
    return request.client.host if request.client else "-"


@router.post("/v1/login/code", response_model=Challenge, status_code=202, tags=["public"],
             summary="Strong real-name login, step 1: identity and name; a one-time code "
             "goes by SMS to the phone the registry holds (the answer is the same whether "
             "or not they match)",
             responses=error_responses(INVALID, THROTTLED,
                                       (422, "INVALID_ID_NUMBER", "malformed ID number"),
                                       (503, "REGISTRY_UNAVAILABLE", "no answer"),
                                       (503, "SMS_UNAVAILABLE", "the SMS gateway did not answer")))
async def login_code(ch: Channel, body: CodeRequest, request: Request) -> dict:
    with refuse_invalid_id():
        number = parse_resident_id(body.id_number).number
    return await ch.login.send_code(body.id_type, number, body.name, client_of(request))


@router.post("/v1/login", response_model=LoginAnswer, tags=["public"],
             summary="Strong real-name login, step 2: the challenge and its SMS code give a "
             "session (five tries per code, codes live five minutes)",
             responses=error_responses(INVALID, THROTTLED,
                                       (401, "LOGIN_REFUSED",
                                        "wrong, expired or used-up code (one answer for all)"),
                                       (429, "LOGIN_LOCKED", "too many tries for this "
                                        "identity: locked until Retry-After")))
def login(ch: Channel, body: LoginRequest, request: Request) -> dict:
    return ch.open_session(ch.login.check_code(body.challenge_id, body.code,
                                               client_of(request)))


@router.get("/v1/me", tags=["resident"], summary="The resident's cards and binding",
            responses=error_responses(*SESSION, *DOWN))
async def me(ch: Channel, s: Resident) -> dict:
    state = ch.state_of(s)
    return {"name": mask_name(s.name), **state,
            "binding": await ch.binding_of(state["ehc_card_id"])}


@router.post("/v1/claim", tags=["resident"],
             summary="Claim the cards this identity grants: the EHC, and the e-SSC when "
             "the resident is insured",
             responses=error_responses(*SESSION, *DOWN,
                                       (422, "REALNAME_MISMATCH", "identity changed")))
async def claim(ch: Channel, s: Resident) -> dict:
    ehc = await ch.ehc.signed("POST", "/ehc/v1/cards",
                              {"id_type": s.id_type, "id_number": s.id_number, "name": s.name,
                               "phone": s.phone})
    try:
        essc = await ch.essc.signed("POST", "/essc/v1/cards",
                                    {"id_type": s.id_type, "id_number": s.id_number,
                                     "name": s.name})
    except ServiceError as exc:
        if exc.code != "NOT_INSURED":
            raise
        essc = None
    ch.remember(s, ehc_card_id=ehc["card_id"], ssc_card_no=essc["ssc_card_no"] if essc else None,
                region=essc["region"] if essc else None)
    return {"ehc": ehc, "essc": essc,
            "grants": "ehc+essc (bind them for the fused card)" if essc else "ehc"}


@router.post("/v1/binding", tags=["resident"],
             summary="Bind the resident's EHC and e-SSC (both systems sign and keep it)",
             responses=error_responses(*SESSION, *DOWN,
                                       (409, "NOTHING_TO_BIND", "claim both cards first"),
                                       (409, "SSC_CARD_LOST", "e-SSC lost"),
                                       (403, "CARD_LOST", "EHC lost"),
                                       (409, "BINDING_EXISTS", "bound to another card")))
async def bind(ch: Channel, s: Resident) -> dict:
    state = ch.state_of(s)
    if not (state["ehc_card_id"] and state["ssc_card_no"]):
        raise Conflict("NOTHING_TO_BIND", "claim both cards first")
    return await ch.ehc.signed("POST", f"/ehc/v1/cards/{state['ehc_card_id']}/binding",
                               {"ssc_card_no": state["ssc_card_no"], "region": state["region"]})


@router.delete("/v1/binding", tags=["resident"], summary="Unbind the two cards",
               responses=error_responses(*SESSION, *DOWN, (404, "BINDING_NOT_FOUND", "not bound")))
async def unbind(ch: Channel, s: Resident) -> dict:
    state = ch.state_of(s)
    if not state["ehc_card_id"]:
        raise NotFound("BINDING_NOT_FOUND", "no card claimed")
    return await ch.ehc.signed("DELETE", f"/ehc/v1/cards/{state['ehc_card_id']}/binding")


@router.get("/v1/code", response_model=Code, tags=["resident"],
            summary="The one code to show: fused when bound, else the card there is",
            responses=error_responses(*SESSION, *DOWN, (404, "NO_CARD", "claim a card first"),
                                      (403, "CARD_LOST", "card lost")))
async def code(ch: Channel, s: Resident) -> dict:
    state = ch.state_of(s)
    if state["ehc_card_id"]:
        kind = "fused" if await ch.binding_of(state["ehc_card_id"]) else "dynamic"
        answer = await ch.ehc.signed("GET", f"/ehc/v1/cards/{state['ehc_card_id']}/qrcode",
                                     params={"kind": kind})
    elif state["ssc_card_no"]:
        answer = await ch.essc.signed("GET", f"/essc/v1/cards/{state['ssc_card_no']}/qrcode")
    else:
        raise NotFound("NO_CARD", "claim a card first")
    return {**answer, "svg": render_svg(answer["qr_text"])}


@router.get("/v1/settlements", tags=["resident"],
            summary="The resident's insurance settlements: split and state",
            responses=error_responses(*SESSION, *DOWN))
async def my_settlements(ch: Channel, s: Resident) -> list[dict]:
    state = ch.state_of(s)
    if not state["ssc_card_no"]:
        return []
    return await ch.essc.signed("GET", f"/essc/v1/cards/{state['ssc_card_no']}/settlements")


@router.post("/v1/settlements/{settlement_id}/handoff", tags=["resident"],
             summary="Mobile payment hand-off: what the phone's wallet needs to pay the "
             "cash part (the hospital's settlement then confirms it with the gateway)",
             responses=error_responses(*SESSION, *DOWN, INVALID,
                                       (404, "SETTLEMENT_NOT_FOUND", "not yours"),
                                       (409, "NOTHING_TO_PAY", "no cash part open")))
async def handoff(ch: Channel, settlement_id: str, body: HandoffRequest, s: Resident) -> dict:
    mine = {r["settlement_id"]: r for r in await my_settlements(ch, s)}
    visit = mine.get(settlement_id)
    if visit is None:
        raise NotFound("SETTLEMENT_NOT_FOUND", "no such settlement of yours")
    if visit["state"] not in ("paying", "awaiting_confirmation") or not visit["cash_fen"]:
        raise Conflict("NOTHING_TO_PAY", f"the visit is {visit['state']}")
    amount = visit["cash_fen"]
    return {"order_id": settlement_id, "merchant": visit["institution_code"],
            "channel": body.channel, "amount_fen": amount, "state": visit["state"],
            "deep_link": f"ehcpay://{body.channel.lower()}/pay?order={settlement_id}"
            f"&merchant={visit['institution_code']}&amount_fen={amount}"}


@router.get("/v1/usage", tags=["resident"],
            summary="Usage history from both card systems, newest first",
            responses=error_responses(*SESSION, *DOWN))
async def usage(ch: Channel, s: Resident) -> list[dict]:
    state = ch.state_of(s)
    merged: dict[tuple[str, int], dict] = {}
    if state["ehc_card_id"]:
        for r in await ch.ehc.signed("GET", f"/ehc/v1/cards/{state['ehc_card_id']}/usage-history"):
            merged[(r["source"], r["source_id"])] = r
    if state["ssc_card_no"]:
        for r in await ch.essc.signed("GET",
                                      f"/essc/v1/cards/{state['ssc_card_no']}/usage-history"):
            merged[(r["source"], r["source_id"])] = r
    return sorted(merged.values(), key=lambda r: r["at"], reverse=True)


# ---------------------------------------------------------------- consent to other apps
async def _each_card(ch: ChannelSystem, s: Session, method: str, tail: str,
                     payload: dict | None = None) -> dict[str, Any]:
    """The same consent call to each card system whose card the resident holds here."""
    state = ch.state_of(s)
    out: dict[str, Any] = {"ehc": None, "essc": None}
    if state["ehc_card_id"]:
        out["ehc"] = await ch.ehc.signed(method, f"/ehc/v1/cards/{state['ehc_card_id']}"
                                         f"/grants{tail}", payload)
    if state["ssc_card_no"]:
        out["essc"] = await ch.essc.signed(method, f"/essc/v1/cards/{state['ssc_card_no']}"
                                           f"/grants{tail}", payload)
    return out


@router.post("/v1/grants", status_code=201, tags=["resident"],
             summary="Let another app reach my cards: an authorisation code per card for "
             "that app and scope, to hand to it (it exchanges each once, within five "
             "minutes, at the card system)",
             responses=error_responses(*SESSION, *DOWN, INVALID,
                                       (404, "NO_CARD", "claim a card first"),
                                       (404, "APP_NOT_FOUND", "no such active app")))
async def grant(ch: Channel, body: GrantRequest, s: Resident) -> dict:
    out = await _each_card(ch, s, "POST", "", body.model_dump())
    if out == {"ehc": None, "essc": None}:
        raise NotFound("NO_CARD", "claim a card first")
    return out


@router.get("/v1/grants", tags=["resident"],
            summary="The apps that can reach my cards, with their scope",
            responses=error_responses(*SESSION, *DOWN))
async def list_grants(ch: Channel, s: Resident) -> dict:
    return {k: v or [] for k, v in (await _each_card(ch, s, "GET", "")).items()}


@router.delete("/v1/grants/{app_key}", status_code=204, tags=["resident"],
               summary="Revoke an app's access to my cards (both systems)",
               responses=error_responses(*SESSION, *DOWN,
                                         (404, "GRANT_NOT_FOUND", "the app holds no access")))
async def revoke_grant(ch: Channel, app_key: str, s: Resident) -> Response:
    revoked = 0
    state = ch.state_of(s)
    targets = [(ch.ehc, f"/ehc/v1/cards/{state['ehc_card_id']}")] if state["ehc_card_id"] \
        else []
    if state["ssc_card_no"]:
        targets.append((ch.essc, f"/essc/v1/cards/{state['ssc_card_no']}"))
    for peer, card in targets:
        try:
            await peer.signed("DELETE", f"{card}/grants/{app_key}")
            revoked += 1
        except ServiceError as exc:
            if exc.code != "GRANT_NOT_FOUND":
                raise
    if not revoked:
        raise NotFound("GRANT_NOT_FOUND", "this app holds no access to your cards")
    return Response(status_code=204)
