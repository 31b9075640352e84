"""Which channel apps may act for a card, and the resident's consent that adds one.

An app reaches a card it opened itself (EHC apply) or one the resident claimed through an
app that logs residents in strongly (the unified entry: SMS code to the registry's
phone). Any other app gets a card only through a grant: the resident, logged in at the
entry, asks for an authorisation code for that app and scope; the app exchanges the code
(once, within five minutes, only for itself) and holds the card with that scope until
the resident revokes it. Applying again with ID number and name never hands a card over.

Scopes: ``codes`` (see the card, fetch its codes, read its usage and settlements) and
``manage`` (also change it: phone, name, lost / unlock / cancel, family, binding)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ..crypto import sm3_hex
from ..cst import utc_now
from ..errors import Forbidden, Invalid, NotFound

SCOPES = ("codes", "manage")
CODE_TTL = timedelta(minutes=5)


def holder_table(metadata: sa.MetaData, key: str, length: int) -> sa.Table:
    """The apps holding each card (``key`` names the card column), with their scope."""
    return sa.Table("card_apps", metadata,
                 sa.Column(key, sa.String(length), primary_key=True),
                 sa.Column("app_key", sa.String(64), primary_key=True),
                 sa.Column("scope", sa.String(8), nullable=False, default="manage"),
                 sa.Column("granted_at", sa.DateTime))  # null: the app opened or claimed it


def grant_code_table(metadata: sa.MetaData, key: str, length: int) -> sa.Table:
    return sa.Table("grant_codes", metadata,
                 sa.Column("code_digest", sa.String(64), primary_key=True),
                 sa.Column(key, sa.String(length), nullable=False),
                 sa.Column("app_key", sa.String(64), nullable=False),
                 sa.Column("scope", sa.String(8), nullable=False),
                 sa.Column("expires_at", sa.DateTime, nullable=False),
                 sa.Column("used", sa.SmallInteger, nullable=False))


class Consent:
    def __init__(self, engine: sa.Engine, holders: sa.Table, codes: sa.Table, key: str,
                 card_missing: str) -> None:
        self.engine = engine
        self.holders = holders
        self.codes = codes
        self.key = key
        self.card_missing = card_missing  # the system's "no such card for this app" code

    def _key(self, table: sa.Table):
        return table.c[self.key]

    def scope_of(self, conn, card: str, app_key: str) -> str | None:
        h = self.holders
        return conn.execute(sa.select(h.c.scope).where(
            self._key(h) == card, h.c.app_key == app_key)).scalar()

    def refuse_unheld(self, card: str, app_key: str, manage: bool) -> None:
        """404 when the app does not hold the card (existence not told); 403 when it
        holds it with the ``codes`` scope and wants to change it."""
        with self.engine.connect() as conn:
            scope = self.scope_of(conn, card, app_key)
        if scope is None:
            raise NotFound(self.card_missing, "no such card for this app")
        if manage and scope != "manage":
            raise Forbidden("SCOPE_INSUFFICIENT", "the resident granted this app the "
                            "'codes' scope only")

    def admit(self, conn, card: str, app_key: str, strong: bool, existing: bool) -> None:
        """On apply or claim: link the card to the app, or refuse. A card the app opens
        now is its own; an existing one goes only to a strong app (or by a grant)."""
        if self.scope_of(conn, card, app_key) is not None:
            return
        if existing and not strong:
            raise Forbidden("CONSENT_REQUIRED", "this card is held through another app: "
                            "the resident grants access at the unified entry")
        conn.execute(sa.insert(self.holders).values(
            {self.key: card, "app_key": app_key, "scope": "manage", "granted_at": None}))

    # ------------------------------------------------------------------ grants
    def issue(self, card: str, for_app: str, scope: str) -> dict[str, Any]:
        """An authorisation code for ``for_app`` (the caller is the strong entry holding
        the card with ``manage``; the route checks that)."""
        code = secrets.token_urlsafe(24)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.codes).values(
                {"code_digest": sm3_hex(code), self.key: card,
                 "app_key": for_app, "scope": scope, "expires_at": utc_now() + CODE_TTL,
                 "used": 0}))
        return {"code": code, "app_key": for_app, "scope": scope,
                "expires_in_s": int(CODE_TTL.total_seconds())}

    def exchange(self, code: str, app_key: str) -> dict[str, str]:
        """The card a code grants to this app (once); one answer for every failure."""
        c = self.codes
        digest = sm3_hex(code)
        refused = Invalid("GRANT_CODE_INVALID", "the code is unknown, expired, used or "
                          "made for another app")
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(c).where(c.c.code_digest == digest)).first()
            if row is None or row.app_key != app_key:
                raise refused
            taken = conn.execute(sa.update(c).where(
                c.c.code_digest == digest, c.c.used == 0, c.c.expires_at > utc_now())
                .values(used=1)).rowcount
            if not taken:
                raise refused
            card = row._mapping[self.key]
            h = self.holders
            held = self.scope_of(conn, card, app_key)
            if held is None:
                conn.execute(sa.insert(h).values({self.key: card, "app_key": app_key,
                                               "scope": row.scope, "granted_at": utc_now()}))
            elif held != "manage":
                conn.execute(sa.update(h).where(self._key(h) == card, h.c.app_key == app_key)
                             .values(scope=row.scope, granted_at=utc_now()))
        return {self.key: card, "scope": row.scope}

    def grants(self, card: str, except_app: str) -> list[dict[str, Any]]:
        h = self.holders
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(h).where(self._key(h) == card,
                                                h.c.app_key != except_app)
                                .order_by(h.c.app_key)).all()
        return [{"app_key": r.app_key, "scope": r.scope,
                 "granted_at": r.granted_at.isoformat() if r.granted_at else None}
                for r in rows]

    def revoke(self, card: str, app_key: str) -> None:
        h = self.holders
        with self.engine.begin() as conn:
            gone = conn.execute(sa.delete(h).where(self._key(h) == card,
                                                h.c.app_key == app_key)).rowcount
        if not gone:
            raise NotFound("GRANT_NOT_FOUND", "this app holds no access to the card")
