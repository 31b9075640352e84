"""The store's folder is owner-only and its databases and secrets are 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from services.app import build_app
from services.common.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_var_folder_databases_and_secrets_are_owner_only(tmp_path: Path) -> None:
    var = tmp_path / "var"
    build_app(Settings(var_dir=var, log_level="WARNING"))
    assert mode(var) == 0o700
    dbs = sorted(var.glob("*.db"))
    assert {p.name for p in dbs} >= {"healthcard.db", "socialcard.db", "registry.db"}
    assert all(mode(p) == 0o600 for p in dbs), {p.name: oct(mode(p)) for p in dbs}
    assert mode(var / "dev-secrets.json") == 0o600


def test_an_existing_open_folder_is_closed(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    build_app(Settings(var_dir=var, log_level="WARNING"), systems=["registry"])
    assert mode(var) == 0o700 and mode(var / "registry.db") == 0o600
