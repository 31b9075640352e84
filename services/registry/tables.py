"""The registry's own tables."""

from sqlalchemy import Column, Date, DateTime, MetaData, String, Table, UniqueConstraint

from ..common.db import serial_id
from ..common.pii import ENCRYPTED_NAME, identity_columns

metadata = MetaData()

residents = Table(
    "residents",
    metadata,
    *identity_columns(name_digest=True),
    Column("sex", String(1), nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("area_code", String(6), nullable=False),
    UniqueConstraint("id_type", "id_digest", name="uq_resident_id"),
)

births = Table(  # newborns by birth certificate, before and after their ID number
    "births",
    metadata,
    Column("cert_digest", String(64), primary_key=True),
    Column("cert_enc", String(200), nullable=False),
    Column("name_digest", String(64), nullable=False),
    Column("name_enc", String(ENCRYPTED_NAME), nullable=False),
    Column("sex", String(1), nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("guardian_digest", String(64), nullable=False),
    Column("area_code", String(6), nullable=False),
    Column("id_digest", String(64)),  # set when the ID number is issued
    Column("id_number_enc", String(200)),
    Column("registered_at", DateTime, nullable=False),
)

deaths = Table(  # civil affairs' death registrations, in the order they were reported
    "deaths",
    metadata,
    serial_id(),
    Column("id_type", String(2), nullable=False),
    Column("id_digest", String(64), nullable=False),
    Column("id_number_enc", String(200), nullable=False),
    Column("died_on", Date, nullable=False),
    Column("reported_at", DateTime, nullable=False),
    UniqueConstraint("id_type", "id_digest", name="uq_death_identity"),
)
