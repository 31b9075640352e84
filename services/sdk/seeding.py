"""Seed a stack through its public API (the SDK): residents in the registry, the insured
among them in the e-SSC system, one hospital per city with its terminals, one designated
retail pharmacy per city with its till, and a channel app (each registered alike with both
card systems), and an EHC for every resident."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .clients import AdminClient, ChannelClient, SdkError
from .synthetic import CITY_AREA_CODES, generate_residents

# departments and terminal types of a demo hospital: (dept code, terminal type, role)
# (department, terminal type, role, reads physical cards: may present static codes)
TERMINALS = (("0101", 1, "registration window", True), ("0102", 2, "self-service kiosk", False),
             ("0301", 1, "consulting room", False), ("0501", 1, "pharmacy window", False))
PHARMACY_TERMINALS = (("0501", 1, "pharmacy till", False),)
PHARMACY_SERIAL = 900  # pharmacies' institution serials: 901, 902... (hospitals' from 1)
BATCH = 500
INSURED_EVERY = 10  # nine residents in ten are insured (hold an issued e-SSC)


def institution_code(city_index: int, hospital: int) -> str:
    area = list(CITY_AREA_CODES.values())[city_index]
    return f"{area}{hospital:06d}"


def seed_stack(url: str, admin_token: str, residents: int, *, hospitals_per_city: int = 1,
               pharmacies_per_city: int = 1, seed: int = 2024,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Everything the SDK needs afterwards; idempotent for the same (residents, seed)."""
    admin = AdminClient(url, admin_token)
    people = list(generate_residents(residents, seed=seed))
    insured = {i: insured_record(p, seed * 1_000_000 + i) for i, p in enumerate(people)
               if i % INSURED_EVERY != INSURED_EVERY - 1}
    records = list(insured.values())
    for i in range(0, len(people), BATCH):
        admin.add_residents([{"id_type": p.id_type, "id_number": p.id_number,
                              "name": p.name, "phone": p.phone}
                             for p in people[i:i + BATCH]])
    for i in range(0, len(records), BATCH):
        admin.add_insured(records[i:i + BATCH])
    institutions = [_institution(admin, ci, h, city, area)
                    for ci, (city, area) in enumerate(CITY_AREA_CODES.items())
                    for h in range(1, hospitals_per_city + 1)]
    pharmacies = [_institution(admin, ci, PHARMACY_SERIAL + k, city, area, level=0)
                  for ci, (city, area) in enumerate(CITY_AREA_CODES.items())
                  for k in range(1, pharmacies_per_city + 1)]
    app_cred = admin.add_shared_app("浙里办 (seed)", strong_realname=True)  # the entry app
    app = ChannelClient(url, app_cred["app_key"], app_cred["app_secret"])
    cards = []
    for i, p in enumerate(people):
        card = app.apply(p.id_type, p.id_number, p.name, p.phone)
        entry = {"card_id": card["card_id"], "empi": card["empi"], "city": p.city}
        if i in insured:
            entry |= {"ssc_card_no": insured[i]["ssc_card_no"], "region": insured[i]["region"]}
        cards.append(entry)
        if progress:
            progress(1)
    admin.close()
    app.close()
    return {"url": url, "channel_apps": [app_cred], "institutions": institutions,
            "pharmacies": pharmacies, "cards": cards}


def _institution(admin: AdminClient, ci: int, h: int, city: str, area: str, *,
                 level: int = 3) -> dict[str, Any]:
    """A hospital (or at level 0 a designated retail pharmacy) registered with both card
    systems; its terminals hold one secret each, the same with both (what was registered
    before keeps its earlier secret)."""
    code = institution_code(ci, h)
    name = f"{city} Pharmacy {h - PHARMACY_SERIAL}" if level == 0 else f"{city} Hospital {h}"
    admin.add_hospital(code, name, area, level=level, exist_ok=True)
    terms = []
    for dept, ttype, role, reader in PHARMACY_TERMINALS if level == 0 else TERMINALS:
        try:
            cred = admin.add_shared_terminal(code, dept, ttype, reader)
        except SdkError as exc:
            if exc.code != "TERMINAL_EXISTS":
                raise
            continue  # its secret was shown once, in an earlier seed file
        terms.append({**cred, "terminal_type": ttype, "role": role,
                      "physical_cards": reader})
    return {"code": code, "name": name, "city": city, "city_code": area, "terminals": terms}


def insured_record(person: Any, serial: int) -> dict[str, Any]:
    """The social-security bureau's record of a resident: an issued e-SSC in the region of
    their city, employee (310) or resident (390) insurance, a personal-account balance."""
    region = CITY_AREA_CODES[person.city]
    employee = serial % 5 < 3
    return {"ssc_card_no": f"{region}{serial:014d}", "id_type": person.id_type,
            "id_number": person.id_number, "name": person.name, "phone": person.phone,
            "region": region, "insurance_type": "310" if employee else "390",
            "account_balance_fen": (serial * 7919) % 500_000 if employee else 0,
            "card_state": 1}


def write_seed_file(data: dict[str, Any], path: Path) -> None:
    """Credentials inside: written atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1)
    os.replace(tmp, path)
