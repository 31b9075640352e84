"""A system's own long-term SM2 key pair (it signs bindings), kept in its own store with
the private half encrypted under the deployment's field cipher."""

from __future__ import annotations

from sqlalchemy import Column, Engine, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from ..crypto import sm2_generate_keypair
from ..pii import FieldCipher


def system_key_table(metadata: MetaData) -> Table:
    return Table("system_keys", metadata,
                 Column("name", String(16), primary_key=True),
                 Column("private_enc", String(300), nullable=False),
                 Column("public_hex", String(130), nullable=False))


def load_or_create(engine: Engine, table: Table, cipher: FieldCipher,
                   name: str = "binding") -> tuple[str, str]:
    """(private hex, public hex); the first worker to start makes it, the others read it."""
    with engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.name == name)).first()
    if row is None:
        private, public = sm2_generate_keypair()
        try:
            with engine.begin() as conn:
                conn.execute(insert(table).values(
                    name=name, private_enc=cipher.encrypt(private), public_hex=public))
        except IntegrityError:
            pass  # another worker won the race: use its key
        with engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.name == name)).one()
    return cipher.decrypt(row.private_enc), row.public_hex
