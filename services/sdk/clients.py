"""Python SDK of the card network: the only door the twin, the load tests and users take.

    admin = AdminClient("http://127.0.0.1:8000", admin_token)
    app = ChannelClient(url, app_key, app_secret)
    card = app.apply("01", "11010020171225006X", "张三")
    code = app.qrcode(card["card_id"])["qr_text"]
    term = TerminalClient(url, terminal_id, secret, city_code="330100")
    identity = term.verify(code, step=10101)

Every channel and terminal request is signed (see ``services.common.signing``); refusals
raise :class:`SdkError` with the server's stable ``code``.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from ..common.signing import sign_headers
from ..rules.codes import Step

CST = timezone(timedelta(hours=8))


class SdkError(Exception):
    """A refusal from the stack: HTTP ``status``, stable ``code``, human ``message``."""

    def __init__(self, status: int, code: str, message: str, request_id: str = "") -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


def explain(exc: Exception) -> str:
    """A refusal (its stable code and message) or an unreachable stack, in one line: what
    a command prints instead of a traceback."""
    code = getattr(exc, "code", None)
    if code:
        return f"{code}: {getattr(exc, 'message', exc)}"
    return f"cannot reach the stack ({type(exc).__name__}: {exc})"


def cst_now_text() -> str:
    return datetime.now(CST).strftime("%Y%m%d%H%M%S")


def cst_today_text() -> str:
    """Today in China Standard Time, ``YYYY-MM-DD``: the day the card network reconciles
    settlements and keeps audit chains by (from 00:00 to 08:00 CST the UTC date is
    yesterday's)."""
    return datetime.now(CST).date().isoformat()


def cst_days_since(first: str) -> list[str]:
    """The China Standard Time days from ``first`` (``YYYY-MM-DD``) to today: the days a
    run that started on ``first`` wrote settlements and audit records on."""
    start, end = date.fromisoformat(first), datetime.now(CST).date()
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


class _Client:
    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None,
                 timeout_s: float = 10.0) -> None:
        self.base_url = base_url
        self._transport = transport
        self._timeout_s = timeout_s
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """Made on first use: a client used only to sign (Locust users) never builds one,
        and building one (TLS context and all) costs tens of milliseconds."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, transport=self._transport,
                                      timeout=self._timeout_s)
        return self._http

    def auth_headers(self, method: str, path: str, body: bytes, query: str = "") -> dict[str, str]:
        return {}

    def request(self, method: str, path: str, payload: Any = None,
                params: dict[str, Any] | None = None, raw: bool = False,
                headers: dict[str, str] | None = None) -> Any:
        return self.send(self.prepare(method, path, payload, params, headers), raw)

    def prepare(self, method: str, path: str, payload: Any = None,
                params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> httpx.Request:
        """A request signed now and sent later (``send``, once, within the signature's
        age limit): a benchmark's client signs its calls before it times them."""
        body = b"" if payload is None else orjson.dumps(payload)
        query = urlencode(params) if params else ""
        headers = {"Content-Type": "application/json", **(headers or {}),
                   **self.auth_headers(method, path, body, query)}
        url = path + ("?" + query if query else "")
        return self.http.build_request(method, url, content=body, headers=headers)

    def send(self, request: httpx.Request, raw: bool = False) -> Any:
        """The answer's JSON (the response itself with ``raw``), or ``SdkError``."""
        resp = self.http.send(request)
        if resp.status_code >= 400:
            try:
                err = resp.json()
            except ValueError:
                err = {"code": "HTTP_ERROR", "message": resp.text[:200]}
            raise SdkError(resp.status_code, err.get("code", "HTTP_ERROR"),
                           err.get("message", ""), err.get("request_id", ""))
        if raw:
            return resp
        return None if resp.status_code == 204 or not resp.content else resp.json()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Signed(_Client):
    def __init__(self, base_url: str, key: str, secret: str | None = None, *,
                 sm2_private_hex: str | None = None, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        self.key = key
        self.secret = secret
        self.sm2_private_hex = sm2_private_hex

    def auth_headers(self, method: str, path: str, body: bytes, query: str = "") -> dict[str, str]:
        return sign_headers(self.key, method, path, body, query, secret=self.secret,
                            sm2_private_hex=self.sm2_private_hex)


class AdminClient(_Client):
    """Operator calls (bearer admin token): institutions, terminals, apps, keys, residents."""

    def __init__(self, base_url: str, token: str, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        self.token = token

    def auth_headers(self, method: str, path: str, body: bytes, query: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def add_residents(self, residents: list[dict]) -> dict:
        return self.request("POST", "/registry/v1/residents:batch", {"residents": residents})

    def add_institution(self, code: str, name: str, city_code: str,
                        sm2_public_key: str | None = None, *, system: str = "ehc",
                        level: int = 3) -> dict:
        """Register an institution with one card system (``ehc`` or ``essc``)."""
        return self.request("POST", f"/{system}/v1/admin/institutions", {
            "code": code, "name": name, "city_code": city_code,
            "sm2_public_key": sm2_public_key, "level": level})

    def add_terminal(self, institution_code: str, dept_code: str,
                     terminal_type: int = 1, *, system: str = "ehc",
                     secret: str | None = None, reads_physical_cards: bool = False) -> dict:
        """``secret`` provisions the one the terminal holds with the other system."""
        return self.request("POST", f"/{system}/v1/admin/terminals", {
            "institution_code": institution_code, "dept_code": dept_code,
            "terminal_type": terminal_type, "secret": secret,
            "reads_physical_cards": reads_physical_cards})

    def add_channel_app(self, name: str, sm2_public_key: str | None = None, *,
                        system: str = "ehc", app_key: str | None = None,
                        app_secret: str | None = None, strong_realname: bool = False) -> dict:
        return self.request("POST", f"/{system}/v1/admin/channel-apps", {
            "name": name, "sm2_public_key": sm2_public_key, "app_key": app_key,
            "app_secret": app_secret, "strong_realname": strong_realname})

    # ------------------------------------------------------------ both card systems at once
    def add_hospital(self, code: str, name: str, city_code: str, *, level: int = 3,
                     exist_ok: bool = False) -> None:
        """Register an institution with both card systems (the EHC and the e-SSC side);
        ``exist_ok``: one already registered on a side is left as it is."""
        for system in ("ehc", "essc"):
            try:
                self.add_institution(code, name, city_code, system=system, level=level)
            except SdkError as exc:
                if not (exist_ok and exc.code == "INSTITUTION_EXISTS"):
                    raise

    def add_pharmacy(self, code: str, name: str, city_code: str) -> None:
        """Register a designated retail pharmacy (level 0) with both card systems."""
        self.add_hospital(code, name, city_code, level=0)

    def add_shared_terminal(self, institution_code: str, dept_code: str,
                            terminal_type: int = 1, reads_physical_cards: bool = False) -> dict:
        """A terminal both card systems know, with one secret: its EHC credentials."""
        cred = self.add_terminal(institution_code, dept_code, terminal_type,
                                 reads_physical_cards=reads_physical_cards)
        self.add_terminal(institution_code, dept_code, terminal_type, system="essc",
                          secret=cred["secret"], reads_physical_cards=reads_physical_cards)
        return cred

    def add_shared_app(self, name: str, strong_realname: bool = False) -> dict:
        """A channel app both card systems know, with one key and secret
        (``strong_realname``: it logs residents in strongly, like the unified entry)."""
        cred = self.add_channel_app(name, strong_realname=strong_realname)
        self.add_channel_app(name, system="essc", app_key=cred["app_key"],
                             app_secret=cred["app_secret"], strong_realname=strong_realname)
        return cred

    def register_birth(self, birth_cert_no: str, name: str, sex: str, birth_date: str,
                       guardian_id_number: str) -> dict:
        """The registry's birth event: a newborn by its birth certificate and guardian."""
        return self.request("POST", "/registry/v1/births", {
            "birth_cert_no": birth_cert_no, "name": name, "sex": sex,
            "birth_date": birth_date, "guardian_id_number": guardian_id_number})

    def issue_id_number(self, birth_cert_no: str, id_number: str) -> None:
        self.request("POST", f"/registry/v1/births/{birth_cert_no}/id-number",
                     {"id_number": id_number})

    def sms_outbox(self, phone: str, limit: int = 5) -> list[dict]:
        """The newest text messages the SMS gateway sent to ``phone``."""
        return self.request("GET", "/sms/v1/outbox", params={"phone": phone, "limit": limit})

    def login_code(self, phone: str) -> str:
        """The one-time login code of the newest SMS to ``phone`` (tests and the demo
        read what a resident reads on their phone)."""
        for message in self.sms_outbox(phone, 1):
            found = re.search(r"[0-9]{6}", message["text"])
            if found:
                return found.group()
        raise SdkError(404, "NO_LOGIN_CODE", "no login code was sent to this phone")

    # ------------------------------------------------------------ managing credentials
    def credentials(self, kind: str, *, system: str = "ehc") -> list[dict]:
        """``kind`` ``terminals`` or ``channel-apps`` of one card system, with state."""
        return self.request("GET", f"/{system}/v1/admin/{kind}")

    def set_active(self, kind: str, key: str, active: bool, *,
                   systems: tuple[str, ...] = ("ehc", "essc")) -> None:
        """Disable (or re-enable) a terminal or app with every card system that knows it
        (a 404 from a system that does not know it is skipped)."""
        verb = "enable" if active else "disable"
        found = False
        for system in systems:
            try:
                self.request("POST", f"/{system}/v1/admin/{kind}/{key}/{verb}")
                found = True
            except SdkError as exc:
                if exc.status != 404:
                    raise
        if not found:
            raise SdkError(404, "CREDENTIAL_NOT_FOUND", f"no card system knows {key}")

    def rotate(self, kind: str, key: str, *,
               systems: tuple[str, ...] = ("ehc", "essc")) -> str:
        """One new secret for a terminal or app, the same with every card system."""
        secret: str | None = None
        for system in systems:
            try:
                secret = self.request("POST", f"/{system}/v1/admin/{kind}/{key}/rotate",
                                      {"secret": secret})["secret"]
            except SdkError as exc:
                if exc.status != 404:
                    raise
        if secret is None:
            raise SdkError(404, "CREDENTIAL_NOT_FOUND", f"no card system knows {key}")
        return secret

    def add_insured(self, insured: list[dict]) -> dict:
        """Import insured persons with their issued e-SSC into the e-SSC system."""
        return self.request("POST", "/essc/v1/admin/insured:batch", {"insured": insured})

    def essc_stats(self) -> dict:
        return self.request("GET", "/essc/v1/admin/stats")

    def fuse_page(self, after: str = "", limit: int = 1000, before: str | None = None) -> dict:
        """Auto-open and bind EHCs for one page of unbound e-SSC holders whose card
        numbers lie in (after, before)."""
        return self.request("POST", "/ehc/v1/admin/fusion/fuse-page",
                            {"after": after, "limit": limit, "before": before})

    def reconcile_bindings(self) -> dict:
        return self.request("POST", "/ehc/v1/admin/fusion/reconcile")

    def pull_usage(self, system: str) -> int:
        """Make ``system`` (ehc or essc) pull its peer's new usage records now."""
        return self.request("POST", f"/{system}/v1/admin/fusion/pull-usage")["received"]

    def pull_deaths(self, system: str) -> int:
        """Make ``system`` (ehc or essc) cancel the cards of newly registered deaths now."""
        return self.request("POST", f"/{system}/v1/admin/civil-affairs/deaths:pull")[
            "cancelled"]

    def report_death(self, id_number: str, died_on: str) -> int:
        """Civil affairs registers a resident's death (YYYY-MM-DD) with the registry."""
        return self.request("POST", "/registry/v1/deaths",
                            {"id_type": "01", "id_number": id_number, "died_on": died_on})["id"]

    def set_faults(self, delay_ms: int = 0, unavailable: bool = False,
                   system: str = "essc") -> dict:
        """Outage drills: on the e-SSC system (its peer routes, its code verification and
        settlement) or on the EHC system (code fetches and verifications)."""
        return self.request("POST", f"/{system}/v1/admin/faults",
                            {"delay_ms": delay_ms, "unavailable": unavailable})

    def payment_behaviour(self, mode: str = "success", delay_ms: int = 0,
                          resolve_after_ms: int = 1000) -> dict:
        """How the payment gateway answers new payments: success, fail, refuse (a 422,
        nothing charged), timeout, unknown (pending, then failed) or late_success
        (pending, then paid)."""
        return self.request("POST", "/pay/v1/admin/behaviour", {
            "mode": mode, "delay_ms": delay_ms, "resolve_after_ms": resolve_after_ms})

    def shared_usage_found(self, source_ids: list[int]) -> list[int]:
        """Which e-SSC usage records (by their IDs there) have reached the EHC side."""
        return self.request("POST", "/ehc/v1/admin/fusion/shared-usage:lookup",
                            {"source": "essc", "source_ids": source_ids})["found"]

    def reconcile_settlements(self, day: str) -> dict:
        """The day's (UTC, YYYY-MM-DD) settlements against the ledger and the gateway."""
        return self.request("GET", "/essc/v1/admin/settlements/reconcile",
                            params={"date": day})

    def audit(self, day: str, system: str = "ehc") -> dict:
        """Verify one system's audit chains of a (China Standard Time) day, YYYY-MM-DD."""
        return self.request("GET", f"/{system}/v1/admin/audit", params={"date": day})

    def seal_audit(self, day: str, system: str = "ehc") -> dict:
        """Seal one system's chain heads of a day now (file and the other system)."""
        return self.request("POST", f"/{system}/v1/admin/audit/seal", params={"date": day})

    def binding_proof(self, binding_id: str, system: str = "ehc") -> dict:
        return self.request("GET", f"/{system}/v1/peer/bindings/{binding_id}")

    def check_binding_proof(self, proof: dict, system: str = "ehc") -> dict:
        return self.request("POST", f"/{system}/v1/peer/bindings:check", proof)

    def list_keys(self) -> list[dict]:
        return self.request("GET", "/ehc/v1/admin/keys")

    def rotate_key(self, purpose: str) -> str:
        return self.request("POST", f"/ehc/v1/admin/keys/{purpose}/rotate")["key_id"]

    def retire_key(self, key_id: str) -> None:
        self.request("POST", f"/ehc/v1/admin/keys/{key_id}/retire")

    def issuance_counts(self) -> dict[str, int]:
        return self.request("GET", "/ehc/v1/admin/stats/issuance")


class ChannelClient(_Signed):
    """A channel app acting for its logged-in residents."""

    def apply(self, id_type: str, id_number: str, name: str, phone: str | None = None) -> dict:
        return self.request("POST", "/ehc/v1/cards", {
            "id_type": id_type, "id_number": id_number, "name": name, "phone": phone})

    def lookup(self, id_type: str, id_number: str) -> dict:
        return self.request("POST", "/ehc/v1/cards/lookup",
                            {"id_type": id_type, "id_number": id_number})

    def card(self, card_id: str) -> dict:
        return self.request("GET", f"/ehc/v1/cards/{card_id}")

    def modify(self, card_id: str, *, phone: str | None = None, name: str | None = None) -> dict:
        body = {k: v for k, v in (("phone", phone), ("name", name)) if v is not None}
        return self.request("PATCH", f"/ehc/v1/cards/{card_id}", body)

    def report_lost(self, card_id: str) -> dict:
        return self.request("POST", f"/ehc/v1/cards/{card_id}/report-lost")

    def unlock(self, card_id: str) -> dict:
        return self.request("POST", f"/ehc/v1/cards/{card_id}/unlock")

    def cancel(self, card_id: str) -> dict:
        return self.request("POST", f"/ehc/v1/cards/{card_id}/cancel")

    def qrcode(self, card_id: str, kind: str = "dynamic") -> dict:
        return self.request("GET", f"/ehc/v1/cards/{card_id}/qrcode", params={"kind": kind})

    def qrcode_image(self, card_id: str, kind: str = "dynamic", fmt: str = "png") -> bytes:
        resp = self.request("GET", f"/ehc/v1/cards/{card_id}/qrcode",
                            params={"kind": kind, "format": fmt}, raw=True)
        return resp.content

    def add_family(self, card_id: str, id_type: str, id_number: str, name: str,
                   relation: str = "child") -> dict:
        return self.request("POST", f"/ehc/v1/cards/{card_id}/family", {
            "id_type": id_type, "id_number": id_number, "name": name, "relation": relation})

    def family(self, card_id: str) -> list[dict]:
        return self.request("GET", f"/ehc/v1/cards/{card_id}/family")

    def remove_family(self, card_id: str, member_card_id: str) -> None:
        self.request("DELETE", f"/ehc/v1/cards/{card_id}/family/{member_card_id}")

    # two-card fusion ------------------------------------------------------------
    def add_newborn(self, guardian_card_id: str, birth_cert_no: str, name: str, sex: str,
                    birth_date: str) -> dict:
        """The newborn's card, applied for by its guardian with the birth certificate."""
        return self.request("POST", f"/ehc/v1/cards/{guardian_card_id}/newborns", {
            "birth_cert_no": birth_cert_no, "name": name, "sex": sex,
            "birth_date": birth_date})

    def upgrade(self, card_id: str) -> dict:
        """A newborn's card under the ID number the registry has since issued."""
        return self.request("POST", f"/ehc/v1/cards/{card_id}/upgrade")

    def exchange_grant(self, code: str, system: str = "ehc") -> dict:
        """The card a resident's authorisation code gives this app (once)."""
        return self.request("POST", f"/{system}/v1/grants/exchange", {"code": code})

    def claim_essc(self, id_type: str, id_number: str, name: str) -> dict:
        return self.request("POST", "/essc/v1/cards",
                            {"id_type": id_type, "id_number": id_number, "name": name})

    def essc_card(self, ssc_card_no: str) -> dict:
        return self.request("GET", f"/essc/v1/cards/{ssc_card_no}")

    def essc_action(self, ssc_card_no: str, action: str) -> dict:
        """``report-lost``, ``unlock`` or ``cancel`` on the e-SSC."""
        return self.request("POST", f"/essc/v1/cards/{ssc_card_no}/{action}")

    def essc_qrcode(self, ssc_card_no: str) -> dict:
        return self.request("GET", f"/essc/v1/cards/{ssc_card_no}/qrcode")

    def bind(self, card_id: str, ssc_card_no: str, region: str) -> dict:
        return self.request("POST", f"/ehc/v1/cards/{card_id}/binding",
                            {"ssc_card_no": ssc_card_no, "region": region})

    def unbind(self, card_id: str) -> dict:
        return self.request("DELETE", f"/ehc/v1/cards/{card_id}/binding")

    def binding(self, card_id: str) -> dict:
        return self.request("GET", f"/ehc/v1/cards/{card_id}/binding")

    def usage_history(self, card_id: str, system: str = "ehc") -> list[dict]:
        """One card's usage records from both card systems (``card_id`` is the e-SSC
        card number when ``system`` is ``essc``)."""
        return self.request("GET", f"/{system}/v1/cards/{card_id}/usage-history")


class TerminalClient(_Signed):
    """A reading terminal of an institution (window, kiosk, pharmacy...)."""

    def __init__(self, base_url: str, terminal_id: str, secret: str | None = None, *,
                 city_code: str, terminal_type: int = 1, institution_name: str = "",
                 **kw: Any) -> None:
        super().__init__(base_url, terminal_id, secret, **kw)
        self.terminal_id = terminal_id
        self.institution_code = terminal_id[:12]
        self.city_code = city_code
        self.terminal_type = terminal_type
        self.institution_name = institution_name or self.institution_code

    def verify_body(self, qr_text: str, step: int = Step.REGISTRATION,
                    time: str | None = None) -> dict:
        return {
            "qr_text": qr_text, "terminal_id": self.terminal_id,
            "institution_code": self.institution_code,
            "institution_name": self.institution_name, "city_code": self.city_code,
            "terminal_type": self.terminal_type, "step": int(step),
            "time": time or cst_now_text(),
        }

    def verify(self, qr_text: str, step: int = Step.REGISTRATION, time: str | None = None) -> dict:
        """An EHC or fused code, on the EHC system's verify route."""
        return self.request("POST", "/ehc/v1/qrcodes/verify",
                            self.verify_body(qr_text, step, time))

    def verify_essc(self, qr_text: str, step: int = Step.PAYMENT, time: str | None = None) -> dict:
        """An e-SSC's own code, on the e-SSC system's verify route."""
        return self.request("POST", "/essc/v1/qrcodes/verify",
                            self.verify_body(qr_text, step, time))

    # settlement (every state-changing call carries an idempotency key: pass the same key
    # to retry a call whose answer was lost; a new one is made otherwise) -------------
    def _keyed(self, path: str, payload: Any, key: str | None) -> dict:
        return self.request("POST", path, payload,
                            headers={"Idempotency-Key": key or uuid.uuid4().hex})

    def upload_fees(self, ec_token: str, items: list[dict], pay_channel: str = "WECHAT",
                    key: str | None = None) -> dict:
        """Items: ``{"code", "category": "A"|"B"|"C", "amount_fen"}``."""
        return self._keyed("/essc/v1/settlements", {
            "ec_token": ec_token, "pay_channel": pay_channel, "items": items}, key)

    def presettle(self, settlement_id: str, key: str | None = None) -> dict:
        return self._keyed(f"/essc/v1/settlements/{settlement_id}/pre-settle", None, key)

    def settle(self, settlement_id: str, key: str | None = None) -> dict:
        return self._keyed(f"/essc/v1/settlements/{settlement_id}/settle", None, key)

    def confirm(self, settlement_id: str, key: str | None = None) -> dict:
        return self._keyed(f"/essc/v1/settlements/{settlement_id}/confirm", None, key)

    def reverse(self, settlement_id: str, key: str | None = None) -> dict:
        return self._keyed(f"/essc/v1/settlements/{settlement_id}/reverse", None, key)

    def settlement(self, settlement_id: str) -> dict:
        return self.request("GET", f"/essc/v1/settlements/{settlement_id}")

    def temporary_card(self, name: str | None = None, sex: str | None = None) -> dict:
        return self.request("POST", "/ehc/v1/temporary-cards", {"name": name, "sex": sex})

    def bind_temporary(self, temp_card_id: str, qr_text: str) -> None:
        self.request("POST", f"/ehc/v1/temporary-cards/{temp_card_id}/bind",
                     {"qr_text": qr_text})

    def link_patient(self, local_patient_id: str, card_id: str) -> None:
        self.request("POST", "/ehc/v1/patient-links",
                     {"local_patient_id": local_patient_id, "card_id": card_id})

    def linked_card(self, local_patient_id: str) -> str:
        return self.request("GET", f"/ehc/v1/patient-links/{local_patient_id}")["card_id"]

    def usage_records(self, after_id: int = 0, limit: int = 100) -> list[dict]:
        return self.request("GET", "/ehc/v1/usage-records",
                            params={"after_id": after_id, "limit": limit})

    def server_time(self) -> dict:
        return self.request("GET", "/ehc/v1/time")


class HospitalClient(AdminClient):
    """The hospital's outpatient service, as its own systems use it (the admin token sets
    up departments, doctors and sessions; it or the service token does the rest)."""

    def add_department(self, code: str, name: str) -> None:
        try:
            self.request("POST", "/hospital/v1/admin/departments", {"code": code, "name": name})
        except SdkError as exc:
            if exc.code != "DEPARTMENT_EXISTS":
                raise

    def add_doctor(self, doctor_id: str, dept_code: str, name: str) -> None:
        self.request("POST", "/hospital/v1/admin/doctors",
                     {"doctor_id": doctor_id, "dept_code": dept_code, "name": name})

    def add_session(self, doctor_id: str, day: str, start: str, end: str, *,
                    slot_minutes: int = 15, per_slot: int = 4, walk_in_share: float = 0.3,
                    holders_per_walk_in: int = 2, drill: bool = False) -> int:
        """A doctor's session; a drill runs on the clock set by :meth:`set_clock`."""
        return self.request("POST", "/hospital/v1/admin/sessions", {
            "doctor_id": doctor_id, "day": day, "start": start, "end": end,
            "slot_minutes": slot_minutes, "per_slot": per_slot,
            "walk_in_share": walk_in_share, "holders_per_walk_in": holders_per_walk_in,
            "drill": drill,
        })["session_id"]

    def set_clock(self, session_id: int, at: str) -> dict:
        return self.request("PUT", f"/hospital/v1/admin/sessions/{session_id}/clock",
                            {"at": at})

    def book(self, session_id: int, slot: str, card_id: str) -> dict:
        return self.request("POST", "/hospital/v1/bookings",
                            {"session_id": session_id, "slot": slot, "card_id": card_id})

    def bookings(self, card_id: str) -> list[dict]:
        return self.request("GET", "/hospital/v1/bookings", params={"card_id": card_id})

    def check_in(self, session_id: int, card_id: str, revisit: bool = False) -> dict:
        return self.request("POST", f"/hospital/v1/sessions/{session_id}/check-ins",
                            {"card_id": card_id, "revisit": revisit})

    def call(self, session_id: int, card_id: str | None = None) -> dict | None:
        """The next patient (or the named one, out of turn); None when nobody due waits."""
        return self.request("POST", f"/hospital/v1/sessions/{session_id}/call",
                            params={"card_id": card_id} if card_id else None)

    def queue_place(self, session_id: int, card_id: str) -> dict:
        return self.request("GET", f"/hospital/v1/sessions/{session_id}/queue",
                            params={"card_id": card_id})

    def publish_report(self, card_id: str, kind: str, title: str, body: str) -> int:
        return self.request("POST", "/hospital/v1/reports", {
            "card_id": card_id, "kind": kind, "title": title, "body": body})["report_id"]

    def reports(self, card_id: str) -> list[dict]:
        return self.request("GET", "/hospital/v1/reports", params={"card_id": card_id})

    def charge(self, card_id: str, items: list[dict], session_id: int | None = None
               ) -> list[int]:
        """Items ``{"code", "category": "A"|"B"|"C", "amount_fen"}`` owed by the visit."""
        return self.request("POST", "/hospital/v1/fees", {
            "card_id": card_id, "session_id": session_id, "items": items})["fee_ids"]

    def bill(self, card_id: str) -> dict:
        """The card's open bill, or a new one of its unbilled fees."""
        return self.request("POST", "/hospital/v1/bills", {"card_id": card_id})

    def bills(self, card_id: str) -> list[dict]:
        return self.request("GET", "/hospital/v1/bills", params={"card_id": card_id})

    def bill_paid(self, bill_id: str, card_id: str, paid_by: str,
                  settlement_id: str | None = None) -> dict:
        return self.request("POST", f"/hospital/v1/bills/{bill_id}/paid", {
            "card_id": card_id, "paid_by": paid_by, "settlement_id": settlement_id})


def settle_bill(hospital: HospitalClient, terminal: TerminalClient, card_id: str,
                ec_token: str, bill: dict | None = None) -> dict:
    """The hospital's payment terminal settles a visit's bill: the bill (the open one
    again on a retry), its items uploaded to the e-SSC settlement under the bill's ID as
    the idempotency key, settled, and the bill reported paid. Safe to call again with the
    same voucher after any failure: nothing is billed or paid twice (a new voucher for an
    uploaded bill is refused as the key's reuse). ``bill``: the card's open bill when the
    terminal holds it already. Returns the settlement's answer."""
    bill = bill or hospital.bill(card_id)
    key = bill["bill_id"]
    sid = terminal.upload_fees(ec_token, bill["items"], key=f"bill-{key}")["settlement_id"]
    answer = terminal.settle(sid, key=f"settle-{key}")
    if answer["state"] == "settled":
        hospital.bill_paid(key, card_id, "essc", sid)
    return answer


class ResidentClient(_Client):
    """A resident at the unified entry (``/channel/v1``): strong real-name login, then a
    bearer session for their cards, code, settlements and grants."""

    def __init__(self, base_url: str, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        self.token: str | None = None

    def auth_headers(self, method: str, path: str, body: bytes, query: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request_code(self, id_number: str, name: str) -> str:
        """Step 1: a code goes by SMS to the registry's phone; the challenge ID."""
        return self.request("POST", "/channel/v1/login/code",
                            {"id_type": "01", "id_number": id_number,
                             "name": name})["challenge_id"]

    def log_in(self, challenge_id: str, code: str) -> str:
        """Step 2: the session token (kept for the calls that follow)."""
        self.token = self.request("POST", "/channel/v1/login",
                                  {"challenge_id": challenge_id, "code": code})["token"]
        return self.token

    def log_in_reading_sms(self, id_number: str, name: str, phone: str,
                           admin: AdminClient) -> str:
        """Both steps, reading the code from the SMS gateway's outbox (tests, demo)."""
        challenge = self.request_code(id_number, name)
        return self.log_in(challenge, admin.login_code(phone))

    def me(self) -> dict:
        return self.request("GET", "/channel/v1/me")

    def claim(self) -> dict:
        return self.request("POST", "/channel/v1/claim")

    def bind(self) -> dict:
        return self.request("POST", "/channel/v1/binding")

    def code(self) -> dict:
        return self.request("GET", "/channel/v1/code")

    def settlements(self) -> list[dict]:
        return self.request("GET", "/channel/v1/settlements")

    # the phone as the hospital's kiosk
    def book(self, session_id: int, slot: str) -> dict:
        return self.request("POST", "/channel/v1/hospital/bookings",
                            {"session_id": session_id, "slot": slot})

    def bookings(self) -> list[dict]:
        return self.request("GET", "/channel/v1/hospital/bookings")

    def cancel_booking(self, booking_id: str) -> dict:
        return self.request("POST", f"/channel/v1/hospital/bookings/{booking_id}/cancel")

    def queue_place(self, session_id: int) -> dict:
        return self.request("GET", "/channel/v1/hospital/queue",
                            params={"session_id": session_id})

    def reports(self) -> list[dict]:
        return self.request("GET", "/channel/v1/hospital/reports")

    def bills(self) -> list[dict]:
        return self.request("GET", "/channel/v1/hospital/bills")

    def usage(self) -> list[dict]:
        return self.request("GET", "/channel/v1/usage")

    def grant(self, app_key: str, scope: str = "codes") -> dict:
        """Authorisation codes (``ehc``, ``essc``) letting ``app_key`` reach my cards."""
        return self.request("POST", "/channel/v1/grants", {"app_key": app_key, "scope": scope})

    def grants(self) -> dict:
        return self.request("GET", "/channel/v1/grants")

    def revoke(self, app_key: str) -> None:
        self.request("DELETE", f"/channel/v1/grants/{app_key}")
