"""National EHC identifiers, checked against an independent implementation written
straight from the specification's steps with the pure-Python gmssl SM4."""

from __future__ import annotations

import secrets

import pytest
from gmssl import sm4 as gm_sm4

from services.common.cards.idcard import InvalidIdNumber, make_resident_id, parse_resident_id
from services.healthcard.ids import derive_card_id, diversification_factor, make_empi


def _sm4(key: bytes, data: bytes) -> bytes:
    c = gm_sm4.CryptSM4(padding_mode=3)
    c.set_key(key, gm_sm4.SM4_ENCRYPT)
    return bytes(c.crypt_ecb(data))


def reference_card_id(security_key: bytes, empi: str, id_type: str, id_number: str) -> str:
    raw = bytes.fromhex(empi)
    groups = [raw[i:i + 8] for i in range(0, 32, 8)]
    factor = bytes(a ^ b ^ c ^ d for a, b, c, d in zip(*groups, strict=True))
    user_key = _sm4(security_key, factor + bytes(255 - b for b in factor))
    plain = (id_type + id_number).encode()
    plain = plain + bytes(16 - len(plain) % 16) if len(plain) % 16 else plain
    return _sm4(user_key, plain).hex().upper()


def test_card_id_matches_the_reference_implementation() -> None:
    for _ in range(30):
        key = secrets.token_bytes(16)
        empi = secrets.token_hex(32).upper()
        number = make_resident_id("330106", parse_resident_id("11010020171225006X")
                                  .birth_date, secrets.randbelow(1000))
        got = derive_card_id(key, empi, "01", number)
        assert got == reference_card_id(key, empi, "01", number)
        assert len(got) == 64 and got == got.upper()


def test_spec_example_shape_and_padding() -> None:
    # the DOMAIN example: "01" + "11010020171225006X" is 20 bytes, padded to 32
    key = bytes(range(16))
    empi = "00" * 32
    assert diversification_factor(empi) == bytes(8)
    cid = derive_card_id(key, empi, "01", "11010020171225006X")
    assert cid == reference_card_id(key, empi, "01", "11010020171225006X")


def test_empi_is_stable_unique_and_64_hex() -> None:
    salt = secrets.token_bytes(32)
    a = make_empi(salt, "01", "11010020171225006X")
    assert a == make_empi(salt, "01", "11010020171225006X")
    assert a != make_empi(salt, "01", "110100201712250078")
    assert len(a) == 64 and int(a, 16) >= 0


@pytest.mark.parametrize(("number", "reason"), [
    ("11010020171225006", "18 characters"),
    ("11010020171225006Y", "17 digits"),
    ("11010020171225007X", "check digit"),
    ("11010020171325006X", "birth date"),
    ("99010020171225006X", "province"),
    ("110100299912250067", "birth date"),
])
def test_resident_id_validation(number: str, reason: str) -> None:
    with pytest.raises(InvalidIdNumber) as info:
        parse_resident_id(number)
    assert reason.split()[0] in str(info.value) or reason in str(info.value)


def test_resident_id_reading() -> None:
    r = parse_resident_id("11010020171225006x")
    assert r.number == "11010020171225006X" and r.birth_date.isoformat() == "2017-12-25"
    assert r.sex == "2" and r.area_code == "110100"
