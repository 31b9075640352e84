"""Key store of the card-management system: security keys (card IDs) and protection keys
(dynamic codes), wrapped under the master key, with versions, rotation and retirement.

``active`` keys make new codes and IDs; ``retiring`` keys still verify what they made;
``retired`` keys verify nothing. Keys never leave this module unwrapped except to the
code that uses them, and no route returns them.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..common.crypto import hmac_sm3, sm4_ecb_decrypt, sm4_ecb_encrypt
from .tables import keys

PURPOSES = ("security", "protection")


@dataclass(frozen=True)
class Key:
    key_id: str
    purpose: str
    version: int
    material: bytes
    state: str
    mac_key: bytes = field(init=False, repr=False)  # derived once: the hot path uses it

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac_key", hmac_sm3(self.material, b"ehc-qr-mac"))


class KeyStore:
    """Reads keys into memory; reloads at most every ``refresh_s`` seconds (other workers
    may rotate) and at once when a version it does not know is asked for."""

    def __init__(self, engine: Engine, master: bytes, refresh_s: float = 5.0) -> None:
        self.engine = engine
        self.master = master
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._keys: dict[str, list[Key]] = {}
        self._loaded_at = 0.0
        self._ensure_initial_keys()
        self.reload()

    def _ensure_initial_keys(self) -> None:
        for purpose in PURPOSES:
            with self.engine.begin() as conn:
                has = conn.execute(
                    select(func.count()).select_from(keys).where(keys.c.purpose == purpose)
                ).scalar_one()
            if not has:
                try:
                    with self.engine.begin() as conn:
                        self._insert(conn, purpose, 1)
                except IntegrityError:  # another worker made it first
                    pass

    def _insert(self, conn: Connection, purpose: str, version: int) -> str:
        key_id = f"{purpose}-{version}"
        wrapped = sm4_ecb_encrypt(self.master, secrets.token_bytes(16)).hex()
        conn.execute(insert(keys).values(
            key_id=key_id, purpose=purpose, version=version, wrapped=wrapped,
            state="active", created_at=datetime.now(UTC).replace(tzinfo=None),
        ))
        return key_id

    def reload(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(select(keys).order_by(keys.c.version.desc())).all()
        loaded: dict[str, list[Key]] = {p: [] for p in PURPOSES}
        for r in rows:
            material = sm4_ecb_decrypt(self.master, bytes.fromhex(r.wrapped))
            loaded[r.purpose].append(Key(r.key_id, r.purpose, r.version, material, r.state))
        with self._lock:
            self._keys = loaded
            self._loaded_at = time.monotonic()

    def _fresh(self) -> dict[str, list[Key]]:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            self.reload()
        return self._keys

    def active(self, purpose: str) -> Key:
        for k in self._fresh()[purpose]:
            if k.state == "active":
                return k
        raise LookupError(f"no active {purpose} key")

    def usable(self, purpose: str) -> list[Key]:
        """Keys that may still verify, newest first."""
        return [k for k in self._fresh()[purpose] if k.state in ("active", "retiring")]

    def by_version(self, purpose: str, version: int) -> Key | None:
        for attempt in range(2):
            for k in self._fresh()[purpose]:
                if k.version == version:
                    return k if k.state != "retired" else None
            if attempt == 0:
                self.reload()
        return None

    def by_id(self, key_id: str) -> Key | None:
        for ks in self._fresh().values():
            for k in ks:
                if k.key_id == key_id:
                    return k
        return None

    def rotate(self, purpose: str) -> str:
        """Make a new active key; the previous active one becomes ``retiring``."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {purpose!r}")
        with self.engine.begin() as conn:
            newest = conn.execute(
                select(func.max(keys.c.version)).where(keys.c.purpose == purpose)
            ).scalar_one() or 0
            if newest >= 255:
                raise ValueError("key versions are exhausted (255)")
            conn.execute(update(keys).where(keys.c.purpose == purpose, keys.c.state == "active")
                         .values(state="retiring"))
            key_id = self._insert(conn, purpose, newest + 1)
        self.reload()
        return key_id

    def retire(self, key_id: str) -> None:
        """A retired key verifies nothing any more; the active key cannot be retired."""
        key = self.by_id(key_id)
        if key is None:
            raise LookupError(key_id)
        if key.state == "active":
            raise ValueError("rotate before retiring the active key")
        with self.engine.begin() as conn:
            conn.execute(update(keys).where(keys.c.key_id == key_id).values(state="retired"))
        self.reload()

    def describe(self) -> list[dict]:
        return [
            {"key_id": k.key_id, "purpose": k.purpose, "version": k.version, "state": k.state}
            for ks in self._fresh().values() for k in ks
        ]
