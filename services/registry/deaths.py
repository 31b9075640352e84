"""Deaths reported by civil affairs: the person stops passing real-name checks, and the
card systems, reading the registrations in order after their cursor, cancel the
person's cards."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from ..common.cards.idcard import ID_TYPE_RESIDENT, parse_resident_id
from ..common.cst import cst_today, utc_now
from ..common.errors import Conflict, Invalid, NotFound
from ..common.pii import FieldCipher
from .tables import deaths, residents


class Deaths:
    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self.engine = engine
        self.cipher = cipher

    def report(self, id_type: str, id_number: str, died_on: date) -> int:
        """Register a resident's death (once); its place in the feed."""
        if id_type != ID_TYPE_RESIDENT:
            raise Invalid("INVALID_REQUEST", "this registry holds resident ID cards (01)")
        number = parse_resident_id(id_number).number
        digest = self.cipher.digest(number)
        if died_on > cst_today():  # the civil registry keeps China Standard Time days
            raise Invalid("INVALID_REQUEST", "died_on is in the future")
        with self.engine.begin() as conn:
            known = conn.execute(select(residents.c.birth_date).where(
                residents.c.id_type == id_type, residents.c.id_digest == digest)).first()
            if known is None:
                raise NotFound("RESIDENT_NOT_FOUND", "no resident with this ID number")
            if died_on < known.birth_date:
                raise Invalid("INVALID_REQUEST", "died_on is before the birth date")
            try:
                key = conn.execute(insert(deaths).values(
                    id_type=id_type, id_digest=digest, id_number_enc=self.cipher.encrypt(number),
                    died_on=died_on, reported_at=utc_now())).inserted_primary_key
            except IntegrityError:
                raise Conflict("DEATH_ALREADY_REPORTED", "this death is registered") from None
        assert key is not None  # an insert returns its key
        return int(key[0])

    def is_dead(self, conn, id_type: str, digest: str) -> bool:
        return conn.execute(select(deaths.c.id).where(
            deaths.c.id_type == id_type, deaths.c.id_digest == digest)).first() is not None

    def after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The registrations after a cursor, in order (peers: the card systems)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(deaths).where(deaths.c.id > after_id)
                                .order_by(deaths.c.id).limit(limit)).all()
        return [{"id": r.id, "id_type": r.id_type,
                 "id_number": self.cipher.decrypt(r.id_number_enc),
                 "died_on": r.died_on.isoformat()} for r in rows]
