"""The registry's birth events: a newborn known by the number of its birth medical
certificate (出生医学证明) and its guardian, before it has a resident ID number; and the
ID number issued later, which makes it a resident like any other (with the guardian's
phone, for the strong login)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..common.cards.idcard import ID_TYPE_RESIDENT, parse_resident_id
from ..common.cst import utc_now
from ..common.errors import Conflict, Invalid, NotFound
from ..common.pii import FieldCipher
from .tables import births, residents

ID_TYPE_BIRTH_CERTIFICATE = "11"  # [ours]: the sources give no code for this document
BIRTH_CERT_RE = re.compile(r"[A-Z][0-9]{9}")


def refuse_bad_certificate(number: str) -> None:
    if not BIRTH_CERT_RE.fullmatch(number):
        raise Invalid("INVALID_BIRTH_CERTIFICATE", "a birth certificate number is one "
                      "capital letter and nine digits")


@dataclass(frozen=True)
class Birth:
    birth_cert_no: str
    name: str
    sex: str  # "1" male, "2" female
    birth_date: date
    guardian_id_number: str


class Births:
    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self.engine = engine
        self.cipher = cipher

    def _guardian(self, conn, id_number: str):
        return conn.execute(select(residents).where(
            residents.c.id_type == ID_TYPE_RESIDENT,
            residents.c.id_digest == self.cipher.digest(id_number))).first()

    def register(self, b: Birth) -> None:
        """Record a birth; the guardian must be a resident."""
        refuse_bad_certificate(b.birth_cert_no)
        guardian_number = parse_resident_id(b.guardian_id_number).number
        c = self.cipher
        try:
            with self.engine.begin() as conn:
                guardian = self._guardian(conn, guardian_number)
                if guardian is None:
                    raise NotFound("GUARDIAN_NOT_FOUND", "the guardian is not a resident")
                conn.execute(insert(births).values(
                    cert_digest=c.digest(b.birth_cert_no), cert_enc=c.encrypt(b.birth_cert_no),
                    name_digest=c.digest(b.name), name_enc=c.encrypt(b.name), sex=b.sex,
                    birth_date=b.birth_date, guardian_digest=guardian.id_digest,
                    area_code=guardian.area_code, registered_at=utc_now()))
        except IntegrityError as exc:
            raise Conflict("BIRTH_EXISTS", "this birth certificate is registered") from exc

    def check(self, birth_cert_no: str, name: str, guardian_id_number: str) -> str:
        """``match`` when the birth is registered with this name and guardian."""
        refuse_bad_certificate(birth_cert_no)
        guardian_digest = self.cipher.digest(parse_resident_id(guardian_id_number).number)
        with self.engine.connect() as conn:
            row = conn.execute(select(births).where(
                births.c.cert_digest == self.cipher.digest(birth_cert_no))).first()
        ok = (row is not None and row.name_digest == self.cipher.digest(name)
              and row.guardian_digest == guardian_digest)
        return "match" if ok else "no_match"

    def issue_id(self, birth_cert_no: str, id_number: str) -> None:
        """The ID number issued to a registered newborn: it becomes a resident."""
        refuse_bad_certificate(birth_cert_no)
        parsed = parse_resident_id(id_number)
        c = self.cipher
        with self.engine.begin() as conn:
            row = conn.execute(select(births).where(
                births.c.cert_digest == c.digest(birth_cert_no))).first()
            if row is None:
                raise NotFound("BIRTH_NOT_FOUND", "no birth with this certificate")
            if row.id_digest is not None:
                if row.id_digest == c.digest(parsed.number):
                    return  # the same ID again: nothing to do
                raise Conflict("ID_ALREADY_ISSUED", "this newborn has another ID number")
            if parsed.birth_date != row.birth_date:
                raise Invalid("INVALID_ID_NUMBER", "the ID number's birth date is not the "
                              "newborn's")
            guardian = conn.execute(select(residents.c.phone_enc).where(
                residents.c.id_type == ID_TYPE_RESIDENT,
                residents.c.id_digest == row.guardian_digest)).first()
            try:
                conn.execute(insert(residents).values(
                    id_type=ID_TYPE_RESIDENT, id_digest=c.digest(parsed.number),
                    id_number_enc=c.encrypt(parsed.number), name_digest=row.name_digest,
                    name_enc=row.name_enc, sex=parsed.sex, birth_date=parsed.birth_date,
                    phone_enc=guardian.phone_enc if guardian else None,
                    area_code=row.area_code))
            except IntegrityError as exc:
                raise Conflict("ID_ALREADY_ISSUED", "this ID number belongs to another "
                               "resident") from exc
            conn.execute(update(births).where(births.c.cert_digest == row.cert_digest)
                         .values(id_digest=c.digest(parsed.number),
                                 id_number_enc=c.encrypt(parsed.number)))

    def issued_id(self, birth_cert_no: str) -> str | None:
        """The ID number issued for this birth, or None (not yet)."""
        refuse_bad_certificate(birth_cert_no)
        with self.engine.connect() as conn:
            row = conn.execute(select(births.c.id_number_enc).where(
                births.c.cert_digest == self.cipher.digest(birth_cert_no))).first()
        if row is None:
            raise NotFound("BIRTH_NOT_FOUND", "no birth with this certificate")
        return self.cipher.decrypt(row.id_number_enc) if row.id_number_enc else None
