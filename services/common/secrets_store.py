"""Deployment secrets: from the environment, or a development file under ``var/`` made on
first use (never committed, never logged); and the owner-only folder (0700) and files
(0600) that hold personal data or keys."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from .crypto import hmac_sm3
from .settings import Settings


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it owner-only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(PermissionError):  # a folder someone else owns stays theirs
        os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> None:
    """Make an existing file owner-only (read and write)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        os.chmod(path, 0o600)


def _dev_file(settings: Settings) -> Path:
    return settings.var_dir / "dev-secrets.json"


def _load_dev(settings: Settings) -> dict[str, str]:
    path = _dev_file(settings)
    private_dir(settings.var_dir)
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "master_key_hex": secrets.token_hex(16),
        "admin_token": secrets.token_urlsafe(24),
        "service_token": secrets.token_urlsafe(24),
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)  # atomic: the first process to arrive wins
    tmp.unlink(missing_ok=True)
    return json.loads(path.read_text())


def deployment_secret(settings: Settings, name: str) -> str:
    """``master_key_hex``, ``admin_token``, ``service_token`` or ``data_token`` (unset:
    derived from the master key, so that stores made before it existed need no new file)."""
    value = getattr(settings, name)
    if value:
        return value
    if name == "data_token":
        return hmac_sm3(master_key(settings), b"ehc data resources layer").hex()
    return _load_dev(settings)[name]


def master_key(settings: Settings) -> bytes:
    key = bytes.fromhex(deployment_secret(settings, "master_key_hex"))
    if len(key) != 16:
        raise ValueError("EHC_MASTER_KEY_HEX must be 32 hex characters (an SM4 key)")
    return key
