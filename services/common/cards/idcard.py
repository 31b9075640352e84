"""Chinese resident identity numbers (GB 11643-1999): 18 characters, check digit, birth date."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from ..errors import Invalid

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
# first two digits: province-level divisions of GB/T 2260
PROVINCES = {
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
    "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
    "63", "64", "65", "71", "81", "82",
}
ID_TYPE_RESIDENT = "01"


class InvalidIdNumber(ValueError):
    """The ID number is not a valid resident identity number; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ResidentId:
    number: str
    area_code: str
    birth_date: date
    sex: str  # "1" male, "2" female (GB/T 2261.1)


def check_digit(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def parse_resident_id(number: str, today: date | None = None) -> ResidentId:
    """Validate an 18-character resident ID number and read what it encodes."""
    if not isinstance(number, str) or len(number) != 18:
        raise InvalidIdNumber("must be 18 characters")
    number = number.upper()
    body, check = number[:17], number[17]
    if not body.isascii() or not body.isdigit() or check not in "0123456789X":
        raise InvalidIdNumber("must be 17 digits and a digit or X")
    if body[:2] not in PROVINCES:
        raise InvalidIdNumber("unknown province code")
    try:
        birth = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError as exc:
        raise InvalidIdNumber("invalid birth date") from exc
    if birth > (today or date.today()) or birth.year < 1880:
        raise InvalidIdNumber("birth date out of range")
    if check_digit(body) != check:
        raise InvalidIdNumber("check digit mismatch")
    return ResidentId(number, body[:6], birth, "1" if int(body[16]) % 2 else "2")


def make_resident_id(area_code: str, birth: date, sequence: int) -> str:
    """Build a valid ID number: area (6), birth date (8), sequence (3; odd = male), check."""
    body = f"{area_code}{birth:%Y%m%d}{sequence % 1000:03d}"
    return body + check_digit(body)


def mask_id_number(number: str) -> str:
    """Keep the area prefix and the last 4 characters only."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_name(name: str) -> str:
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone: str | None) -> str | None:
    if not phone or len(phone) < 7:
        return phone
    return phone[:3] + "****" + phone[-4:]


@contextmanager
def refuse_invalid_id() -> Iterator[None]:
    """A malformed resident ID number inside the block answers ``INVALID_ID_NUMBER``."""
    try:
        yield
    except InvalidIdNumber as exc:
        raise Invalid("INVALID_ID_NUMBER", f"id_number: {exc.reason}") from exc
