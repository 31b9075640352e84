"""Files that hold personal data or keys: the folder owner-only (0700), each file 0600."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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
