"""Card lifecycle: apply (idempotent), query, modify, lost / unlock / cancel, family
members, temporary cards and hospital patient-ID links."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ..common.cards.consent import Consent
from ..common.cards.idcard import mask_id_number, mask_name, mask_phone, parse_resident_id
from ..common.cst import utc_now
from ..common.db import rows_by_identity
from ..common.errors import Conflict, Forbidden, Invalid, NotFound
from ..common.pii import FieldCipher
from .ids import derive_card_id, make_empi
from .keystore import KeyStore
from .qrcodes import new_temporary_id
from .tables import card_apps, cards, family_members, grant_codes, patient_links

NORMAL, LOST, CANCELLED, CONFIRMED, NOT_ISSUED = 1, 2, 3, 4, 5
ID_TYPE_BIRTH_CERTIFICATE = "11"  # a newborn's card before its ID number [ours]
USABLE_STATES = (NORMAL, CONFIRMED)
STATE_ERRORS = {
    LOST: (Forbidden, "CARD_LOST", "the card is reported lost"),
    CANCELLED: (Forbidden, "CARD_CANCELLED", "the card is cancelled"),
    NOT_ISSUED: (Forbidden, "CARD_NOT_ISSUED", "the card is not issued"),
}
TRANSITIONS = {  # action: (allowed from, to)
    "report-lost": ((NORMAL, CONFIRMED), LOST),
    "unlock": ((LOST,), NORMAL),
    "cancel": ((NORMAL, LOST, CONFIRMED), CANCELLED),
}



def refuse_unusable(state: int) -> None:
    if state not in USABLE_STATES:
        kind, code, message = STATE_ERRORS.get(
            state, (Forbidden, "CARD_UNUSABLE", "card not usable"))
        raise kind(code, message)


class CardService:
    def __init__(self, engine: Engine, keystore: KeyStore, cipher: FieldCipher,
                 empi_salt: bytes) -> None:
        self.consent = Consent(engine, card_apps, grant_codes, "card_id", "CARD_NOT_FOUND")
        self.engine = engine
        self.keystore = keystore
        self.cipher = cipher
        self.empi_salt = empi_salt

    # ------------------------------------------------------------------ views
    def view(self, row: Row, *, masked: bool = True) -> dict[str, Any]:
        """A card as answered to callers; personal data masked unless needed."""
        id_number = self.cipher.decrypt(row.id_number_enc)
        name = self.cipher.decrypt(row.name_enc) if row.name_enc else None
        phone = self.cipher.decrypt(row.phone_enc) if row.phone_enc else None
        return {
            "card_id": row.card_id,
            "empi": row.empi,
            "id_type": row.id_type,
            "id_number": mask_id_number(id_number) if masked else id_number,
            "name": (mask_name(name) if masked and name else name),
            "sex": row.sex,
            "birth_date": row.birth_date.isoformat() if row.birth_date else None,
            "phone": mask_phone(phone) if masked else phone,
            "state": row.state,
            "card_type": row.card_type,
            "temporary": bool(row.temporary),
        }

    # ------------------------------------------------------------------ lookup
    def _by_identity(self, conn, id_type: str, id_number: str) -> Row | None:
        return conn.execute(select(cards).where(
            cards.c.id_type == id_type, cards.c.id_digest == self.cipher.digest(id_number)
        )).first()

    def owned(self, card_id: str, app_key: str, manage: bool = False) -> Row:
        """The card, if this channel app holds it (with the ``manage`` scope, when it
        wants to change it); 404 otherwise (existence not leaked)."""
        self.consent.refuse_unheld(card_id, app_key, manage)
        return self.card(card_id)

    def lookup(self, id_type: str, id_number: str, app_key: str) -> Row:
        with self.engine.connect() as conn:
            row = self._by_identity(conn, id_type, id_number)
        if row is None:
            raise NotFound("CARD_NOT_FOUND", "no card for this identity")
        return self.owned(row.card_id, app_key)

    # ------------------------------------------------------------------ apply
    def apply(self, *, id_type: str, id_number: str, name: str, sex: str | None,
              birth_date, phone: str | None, issuer: str, app_key: str | None,
              strong: bool = False) -> tuple[Row, bool]:
        """Open a card, or return the existing one (restoring a cancelled card) to an
        app that holds it or logs residents in strongly (else ``CONSENT_REQUIRED``)."""
        for _ in range(3):
            try:
                return self._apply_once(id_type, id_number, name, sex, birth_date, phone,
                                        issuer, app_key, strong)
            except IntegrityError:
                continue  # a concurrent apply for the same person won: read theirs
        raise Conflict("APPLY_CONFLICT", "concurrent applications; retry")

    def _apply_once(self, id_type, id_number, name, sex, birth_date, phone, issuer, app_key,
                    strong):
        now = utc_now()
        with self.engine.begin() as conn:
            row = self._by_identity(conn, id_type, id_number)
            created = row is None
            if created:
                values = self._new_card(
                    {"id_type": id_type, "id_number": id_number, "name": name,
                     "phone": phone}, self.cipher.digest(id_number),
                    self.keystore.active("security"), issuer, now)
                card_id = values["card_id"]
                conn.execute(insert(cards).values(**values))
            else:
                assert row is not None  # created is False
                card_id = row.card_id
            if app_key is not None:  # before any change: a refused app changes nothing
                self.consent.admit(conn, card_id, app_key, strong, existing=not created)
            if row is not None and row.state == CANCELLED:
                conn.execute(update(cards).where(cards.c.card_id == card_id)
                             .values(state=NORMAL, updated_at=now))
            row = conn.execute(select(cards).where(cards.c.card_id == card_id)).one()
        return row, created

    def cancel_deceased(self, conn, id_type: str, id_number: str) -> int:
        """A death civil affairs registered: the person's card is cancelled (and a new
        application fails the real-name check)."""
        return conn.execute(update(cards).where(
            cards.c.id_type == id_type, cards.c.id_digest == self.cipher.digest(id_number),
            cards.c.state != CANCELLED).values(state=CANCELLED, updated_at=utc_now())).rowcount

    def card(self, card_id: str) -> Row:
        with self.engine.connect() as conn:
            row = conn.execute(select(cards).where(cards.c.card_id == card_id)).first()
        if row is None:
            raise NotFound("CARD_NOT_FOUND", "no card with this ID")
        return row

    def apply_many(self, people: list[dict[str, Any]], issuer: str) -> tuple[int, list[Row]]:
        """Bulk form of ``apply`` for auto-opening (identities already real-name checked
        by the issuing system): (cards opened, the card of each person, in order)."""
        now = utc_now()
        digests = [self.cipher.digest(p["id_number"]) for p in people]
        keys = sorted({(p["id_type"], d) for p, d in zip(people, digests, strict=True)})
        key = self.keystore.active("security")
        with self.engine.begin() as conn:
            found = {(r.id_type, r.id_digest): r for r in rows_by_identity(conn, cards, keys)}
            fresh, restored = [], []
            for p, digest in zip(people, digests, strict=True):
                row = found.get((p["id_type"], digest))
                if row is not None:
                    if row.state == CANCELLED:
                        restored.append(row.card_id)
                    continue
                fresh.append(self._new_card(p, digest, key, issuer, now))
                found[(p["id_type"], digest)] = None  # a duplicate in the same page
            if fresh:
                conn.execute(insert(cards), fresh)
            if restored:
                conn.execute(update(cards).where(cards.c.card_id.in_(restored))
                             .values(state=NORMAL, updated_at=now))
            rows = {(r.id_type, r.id_digest): r for r in rows_by_identity(conn, cards, keys)}
        return len(fresh), [rows[(p["id_type"], d)] for p, d in zip(people, digests,
                                                                     strict=True)]

    def _new_card(self, p: dict[str, Any], digest: str, key, issuer: str,
                  now: datetime) -> dict[str, Any]:
        sex, birth = None, None
        if p["id_type"] == "01":
            parsed = parse_resident_id(p["id_number"])
            sex, birth = parsed.sex, parsed.birth_date
        empi = make_empi(self.empi_salt, p["id_type"], p["id_number"])
        phone = p.get("phone")
        return {
            "card_id": derive_card_id(key.material, empi, p["id_type"], p["id_number"]),
            "empi": empi, "id_type": p["id_type"], "id_digest": digest,
            "id_number_enc": self.cipher.encrypt(p["id_number"]),
            "name_digest": self.cipher.digest(p["name"]),
            "name_enc": self.cipher.encrypt(p["name"]), "sex": sex, "birth_date": birth,
            "phone_enc": self.cipher.encrypt(phone) if phone else None,
            "state": NORMAL, "card_type": 0, "temporary": 0, "security_key_id": key.key_id,
            "issuer": issuer, "created_at": now, "updated_at": now,
        }

    # ------------------------------------------------------------------ changes
    def modify(self, card_id: str, app_key: str, *, phone: str | None, name: str | None) -> Row:
        self.owned(card_id, app_key, manage=True)
        values: dict[str, Any] = {"updated_at": utc_now()}
        if phone is not None:
            values["phone_enc"] = self.cipher.encrypt(phone)
        if name is not None:
            values["name_enc"] = self.cipher.encrypt(name)
            values["name_digest"] = self.cipher.digest(name)
        with self.engine.begin() as conn:
            conn.execute(update(cards).where(cards.c.card_id == card_id).values(**values))
            return conn.execute(select(cards).where(cards.c.card_id == card_id)).one()

    def change_state(self, card_id: str, app_key: str, action: str) -> Row:
        allowed, target = TRANSITIONS[action]
        self.owned(card_id, app_key, manage=True)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(cards).where(cards.c.card_id == card_id, cards.c.state.in_(allowed))
                .values(state=target, updated_at=utc_now())
            ).rowcount
            row = conn.execute(select(cards).where(cards.c.card_id == card_id)).one()
        if not done:
            raise Conflict("CARD_STATE_CONFLICT",
                           f"cannot {action} a card in state {row.state}")
        return row

    # ------------------------------------------------------------------ family
    def add_family(self, owner_id: str, app_key: str, member: Row, relation: str) -> None:
        owner = self.owned(owner_id, app_key, manage=True)
        if owner.card_id == member.card_id:
            raise Invalid("FAMILY_SELF", "a card cannot be its own family member")
        with self.engine.begin() as conn:
            exists = conn.execute(select(family_members).where(
                family_members.c.owner_card_id == owner_id,
                family_members.c.member_card_id == member.card_id)).first()
            if exists is None:
                conn.execute(insert(family_members).values(
                    owner_card_id=owner_id, member_card_id=member.card_id, relation=relation))

    def list_family(self, owner_id: str, app_key: str) -> list[tuple[Row, str]]:
        self.owned(owner_id, app_key)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(cards, family_members.c.relation)
                .join(family_members, family_members.c.member_card_id == cards.c.card_id)
                .where(family_members.c.owner_card_id == owner_id)
            ).all()
        return [(r, r.relation) for r in rows]

    def remove_family(self, owner_id: str, app_key: str, member_id: str) -> None:
        self.owned(owner_id, app_key, manage=True)
        with self.engine.begin() as conn:
            gone = conn.execute(delete(family_members).where(
                family_members.c.owner_card_id == owner_id,
                family_members.c.member_card_id == member_id)).rowcount
        if not gone:
            raise NotFound("FAMILY_MEMBER_NOT_FOUND", "no such family member")

    # ------------------------------------------------------------------ newborns
    def open_newborn(self, guardian_id: str, app_key: str, strong: bool, birth_cert_no: str,
                     name: str, sex: str, birth_date: date) -> Row:
        """A newborn's card under its birth certificate number (ID type 11), in the
        guardian's family list (idempotent)."""
        now = utc_now()
        digest = self.cipher.digest(birth_cert_no)
        with self.engine.begin() as conn:
            row = self._by_identity(conn, ID_TYPE_BIRTH_CERTIFICATE, birth_cert_no)
            if row is None:
                values = self._new_card(
                    {"id_type": ID_TYPE_BIRTH_CERTIFICATE, "id_number": birth_cert_no,
                     "name": name, "phone": None}, digest, self.keystore.active("security"),
                    app_key, now)
                values.update(sex=sex, birth_date=birth_date)
                conn.execute(insert(cards).values(**values))
                card_id = values["card_id"]
            else:
                card_id = row.card_id
            self.consent.admit(conn, card_id, app_key, strong, existing=row is not None)
            linked = conn.execute(select(family_members).where(
                family_members.c.owner_card_id == guardian_id,
                family_members.c.member_card_id == card_id)).first()
            if linked is None:
                conn.execute(insert(family_members).values(
                    owner_card_id=guardian_id, member_card_id=card_id, relation="child"))
            return conn.execute(select(cards).where(cards.c.card_id == card_id)).one()

    def upgrade_to_resident_id(self, card_id: str, id_number: str) -> Row:
        """The newborn's card, in place (same card ID, EMPI, history and family), now
        under the resident ID number issued to it."""
        parsed = parse_resident_id(id_number)
        try:
            with self.engine.begin() as conn:
                taken = self._by_identity(conn, "01", parsed.number)
                if taken is not None:
                    raise Conflict("CARD_EXISTS_FOR_ID", "a card already holds this ID number")
                conn.execute(update(cards).where(
                    cards.c.card_id == card_id,
                    cards.c.id_type == ID_TYPE_BIRTH_CERTIFICATE).values(
                    id_type="01", id_digest=self.cipher.digest(parsed.number),
                    id_number_enc=self.cipher.encrypt(parsed.number), sex=parsed.sex,
                    birth_date=parsed.birth_date, updated_at=utc_now()))
                return conn.execute(select(cards).where(cards.c.card_id == card_id)).one()
        except IntegrityError as exc:
            raise Conflict("CARD_EXISTS_FOR_ID", "a card already holds this ID number") from exc

    # ------------------------------------------------------------------ temporary cards
    def issue_temporary(self, institution_code: str, name: str | None, sex: str | None) -> Row:
        """A card for a patient without an ID document (emergencies): random ID, ``:9``."""
        temp_id = new_temporary_id()
        now = utc_now()
        with self.engine.begin() as conn:
            conn.execute(insert(cards).values(
                card_id=temp_id, empi=temp_id, id_type="99",
                id_digest=self.cipher.digest("temp:" + temp_id),
                id_number_enc=self.cipher.encrypt(""),
                name_digest=self.cipher.digest(name) if name else None,
                name_enc=self.cipher.encrypt(name) if name else None, sex=sex,
                state=NORMAL, card_type=0, temporary=1, issuer=institution_code,
                created_at=now, updated_at=now,
            ))
            return conn.execute(select(cards).where(cards.c.card_id == temp_id)).one()

    def bind_temporary(self, temp_id: str, real_card_id: str, institution_code: str) -> None:
        """Link a temporary card to the real card a verified code named (it must exist,
        be a real card and be usable)."""
        with self.engine.begin() as conn:
            real = conn.execute(select(cards.c.state).where(
                cards.c.card_id == real_card_id, cards.c.temporary == 0)).first()
            if real is None:
                raise NotFound("CARD_NOT_FOUND", "the code names no card")
            refuse_unusable(real.state)
            temp = conn.execute(select(cards).where(
                cards.c.card_id == temp_id, cards.c.temporary == 1,
                cards.c.issuer == institution_code)).first()
            if temp is None:
                raise NotFound("TEMP_CARD_NOT_FOUND", "no such temporary card here")
            if temp.linked_card_id not in (None, real_card_id):
                raise Conflict("TEMP_CARD_BOUND", "temporary card already bound")
            conn.execute(update(cards).where(cards.c.card_id == temp_id)
                         .values(linked_card_id=real_card_id, updated_at=utc_now()))

    # ------------------------------------------------------------------ patient links
    def link_patient(self, institution_code: str, local_id: str, card_id: str) -> None:
        with self.engine.begin() as conn:
            cur = conn.execute(select(patient_links).where(and_(
                patient_links.c.institution_code == institution_code,
                (patient_links.c.local_patient_id == local_id)
                | (patient_links.c.card_id == card_id)))).all()
            if any(r.card_id != card_id or r.local_patient_id != local_id for r in cur):
                raise Conflict("PATIENT_LINK_CONFLICT",
                               "patient ID or card already linked differently here")
            if not cur:
                conn.execute(insert(patient_links).values(
                    institution_code=institution_code, local_patient_id=local_id,
                    card_id=card_id))

    def linked_card(self, institution_code: str, local_id: str) -> str:
        with self.engine.connect() as conn:
            card_id = conn.execute(select(patient_links.c.card_id).where(
                patient_links.c.institution_code == institution_code,
                patient_links.c.local_patient_id == local_id)).scalar()
        if card_id is None:
            raise NotFound("PATIENT_LINK_NOT_FOUND", "no card linked to this patient ID")
        return card_id

    def issuance_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(cards.c.issuer, func.count())
                                .where(cards.c.temporary == 0).group_by(cards.c.issuer)).all()
        return {r[0]: int(r[1]) for r in rows}
