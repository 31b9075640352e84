"""The analytics store: one folder, owner-only, of Parquet files partitioned by source
and day (``<system>.<source>/day=YYYY-MM-DD/<page>.parquet``), the cursor of each source
(``cursors.json``), read through DuckDB views named ``<system>_<source>``."""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..common.secrets_store import private_dir


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_dir(self.path)

    # ------------------------------------------------------------------ cursors
    @property
    def _cursor_file(self) -> Path:
        return self.path / "cursors.json"

    def cursors(self) -> dict[str, str]:
        return json.loads(self._cursor_file.read_text()) if self._cursor_file.exists() else {}

    def save_cursor(self, source: str, cursor: str) -> None:
        """Written after the page it ends (replace, never a half-written file)."""
        values = {**self.cursors(), source: cursor}
        tmp = self._cursor_file.with_suffix(".tmp")
        _write_private(tmp, json.dumps(values, indent=1).encode())
        os.replace(tmp, self._cursor_file)

    # ------------------------------------------------------------------ pages
    def write_page(self, source: str, after: str | None, rows: list[dict[str, Any]],
                   dated_by: str) -> list[Path]:
        """One page's rows, a file per day, named by the cursor the page started after: a
        page pulled again after an interruption replaces its own files, so no row is
        ever kept twice."""
        name = hashlib.sha256((after or "").encode()).hexdigest()[:20] + ".parquet"
        by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_day[str(row[dated_by])[:10]].append(row)
        written = []
        for day, day_rows in sorted(by_day.items()):
            folder = private_dir(private_dir(self.path / source) / f"day={day}")
            target = folder / name
            tmp = folder / f".{name}.tmp"
            pq.write_table(pa.Table.from_pylist(day_rows), tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
            written.append(target)
        return written

    def sources(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir()
                      if p.is_dir() and any(p.glob("day=*/*.parquet")))

    def connect(self):
        """A DuckDB connection with a view per source (``ehc_usage``, ``essc_ledger``...)."""
        import duckdb

        con = duckdb.connect()
        for source in self.sources():
            files = str(self.path / source / "day=*" / "*.parquet")
            con.execute(f"CREATE VIEW {view_name(source)} AS SELECT * FROM read_parquet("
                        f"'{files}', hive_partitioning = true, union_by_name = true)")
        return con


def view_name(source: str) -> str:
    return source.replace(".", "_")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
