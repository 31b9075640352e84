"""Where a run writes its files: never beside an earlier run's."""

from __future__ import annotations

import shutil
from pathlib import Path


class FolderRefused(ValueError):
    """The folder holds an earlier run's files (or is a file): the message says what to do."""


def fresh_folder(out: Path | None, default: Path, force: bool) -> Path:
    """An empty folder for this run: ``out`` when it is empty (or cleared with ``force``);
    without ``out``, the command's own ``default`` folder, replaced as a whole."""
    if out is None:
        out, force = default, True  # its own folder: the previous run of this command
    if out.exists() and not out.is_dir():
        raise FolderRefused(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FolderRefused(f"--out {out} holds an earlier run's files: pass --force to "
                                "replace them, or give another folder")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # no permission, a read-only disk, a path under a file
        raise FolderRefused(f"--out {out}: cannot make it ({exc.strerror or exc})") from None
    return out
