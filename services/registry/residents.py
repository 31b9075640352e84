"""Population registry (simulated public-security database): the real-name source of truth."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine, func, insert, select

from ..common.cards.idcard import ID_TYPE_RESIDENT, InvalidIdNumber, parse_resident_id
from ..common.pii import FieldCipher
from .births import Births
from .deaths import Deaths
from .tables import residents


@dataclass(frozen=True)
class NewResident:
    id_type: str
    id_number: str
    name: str
    phone: str | None = None


class RegistryService:
    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self.births = Births(engine, cipher)
        self.deaths = Deaths(engine, cipher)
        self.engine = engine
        self.cipher = cipher

    def _row(self, r: NewResident) -> dict:
        parsed = parse_resident_id(r.id_number)
        return {
            "id_type": r.id_type,
            "id_digest": self.cipher.digest(parsed.number),
            "id_number_enc": self.cipher.encrypt(parsed.number),
            "name_digest": self.cipher.digest(r.name),
            "name_enc": self.cipher.encrypt(r.name),
            "sex": parsed.sex,
            "birth_date": parsed.birth_date,
            "phone_enc": self.cipher.encrypt(r.phone) if r.phone else None,
            "area_code": parsed.area_code,
        }

    def add_residents(self, batch: Iterable[NewResident]) -> tuple[int, int]:
        """Insert the residents not yet known, in one transaction: (created, existing)."""
        rows = [self._row(r) for r in batch]  # validates all before writing any
        digests = [r["id_digest"] for r in rows]
        with self.engine.begin() as conn:
            known: set[str] = set()
            for i in range(0, len(digests), 500):
                chunk = digests[i : i + 500]
                known.update(
                    conn.execute(
                        select(residents.c.id_digest).where(
                            residents.c.id_type == ID_TYPE_RESIDENT,  # the index leads with it
                            residents.c.id_digest.in_(chunk))
                    ).scalars()
                )
            fresh, seen = [], set()
            for row in rows:
                if row["id_digest"] in known or row["id_digest"] in seen:
                    continue
                seen.add(row["id_digest"])
                fresh.append(row)
            if fresh:
                conn.execute(insert(residents), fresh)
        return len(fresh), len(rows) - len(fresh)

    def _living(self, id_type: str, id_number: str):
        """The resident's name digest and phone, unless unknown or reported dead."""
        digest = self.cipher.digest(parse_resident_id(id_number).number)
        with self.engine.connect() as conn:
            row = conn.execute(select(residents.c.name_digest, residents.c.phone_enc).where(
                residents.c.id_type == id_type, residents.c.id_digest == digest)).first()
            if row is None or self.deaths.is_dead(conn, id_type, digest):
                return None
        return row

    def realname_check(self, id_type: str, id_number: str, name: str) -> str:
        """``match`` when the person exists with this name (and is alive); ``no_match``
        otherwise (unknown number, other name, a death reported: the answer never says
        which); ``unknown`` for ID types this registry does not hold."""
        if id_type != ID_TYPE_RESIDENT:
            return "unknown"
        row = self._living(id_type, id_number)
        if row is not None and row.name_digest == self.cipher.digest(name):
            return "match"
        return "no_match"

    def realname_result(self, id_type: str, id_number: str, name: str) -> str:
        """``realname_check``, with a malformed ID number answered ``invalid``."""
        try:
            return self.realname_check(id_type, id_number, name)
        except InvalidIdNumber:
            return "invalid"

    def contact(self, id_type: str, id_number: str, name: str) -> str | None:
        """The phone the registry holds for this identity, only when the name matches
        (strong real-name login sends its one-time code there); None otherwise."""
        if id_type != ID_TYPE_RESIDENT:
            return None
        row = self._living(id_type, id_number)
        if row is None or row.name_digest != self.cipher.digest(name) or not row.phone_enc:
            return None
        return self.cipher.decrypt(row.phone_enc)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(residents)).scalar_one())


def validate_id(id_type: str, id_number: str) -> date | None:
    """Raise ``InvalidIdNumber`` for a malformed resident ID; other types pass through."""
    if id_type == ID_TYPE_RESIDENT:
        return parse_resident_id(id_number).birth_date
    if not id_number or len(id_number) > 32:
        raise InvalidIdNumber("ID number must be 1 to 32 characters")
    return None
