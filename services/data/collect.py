"""Gathering (the fusion layer): each source pulled from its system's export route page by
page after its cursor, each page stored before its cursor moves, so that a collection
interrupted anywhere resumes where it stopped and keeps every row once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from .store import Store

# (system prefix, source): what `ehc data collect` gathers by default
SOURCES = (
    ("ehc", "usage"), ("ehc", "cards"), ("ehc", "bindings"), ("ehc", "shared_usage"),
    ("essc", "usage"), ("essc", "settlements"), ("essc", "ledger"), ("essc", "bindings"),
    ("essc", "shared_usage"), ("hospital", "bookings"), ("hospital", "checkins"),
    ("hospital", "bills"),
)


class CollectError(Exception):
    """A source could not be read (the system's code and message, or the transport's)."""


class NotServed(CollectError):
    """The stack at this address does not run the source's system (its route is absent):
    the source is skipped, the others are collected."""


@dataclass
class Collected:
    source: str
    rows: int
    pages: int
    cursor: str | None
    served: bool = True


def collect(base_url: str, token: str, store: Store, *,
            sources: tuple[tuple[str, str], ...] = SOURCES, page_size: int = 1000,
            max_pages: int | None = None, client: httpx.Client | None = None,
            progress: Callable[[str, int], None] | None = None) -> list[Collected]:
    """Pull every source after its stored cursor until it has no more (or ``max_pages``
    pages in all, for a bounded run); ``progress(source, rows)`` after each page."""
    own = client is None
    http = client or httpx.Client(base_url=base_url, timeout=30.0)
    headers = {"authorization": f"Bearer {token}"}
    out, pages_left = [], max_pages
    try:
        for system, name in sources:
            source = f"{system}.{name}"
            cursor = store.cursors().get(source)
            done = Collected(source, 0, 0, cursor)
            while pages_left is None or pages_left > 0:
                try:
                    page = _page(http, f"/{system}/v1/export/{name}", headers, cursor,
                                 page_size)
                except NotServed:
                    done.served = False
                    break
                stamp = datetime.now(UTC).replace(tzinfo=None).isoformat()
                rows = [{**r, "collected_at": stamp} for r in page["rows"]]
                if rows:
                    store.write_page(source, cursor, rows, page["dated_by"])
                    cursor = page["cursor"]
                    store.save_cursor(source, cursor)
                done.rows += len(rows)
                done.pages += 1
                done.cursor = cursor
                if pages_left is not None:
                    pages_left -= 1
                if progress:
                    progress(source, len(rows))
                if not page["more"]:
                    break
            out.append(done)
    finally:
        if own:
            http.close()
    return out


def _page(http: httpx.Client, path: str, headers: dict[str, str], cursor: str | None,
          limit: int) -> dict:
    params: dict[str, str | int] = {"limit": limit}
    if cursor:
        params["after"] = cursor
    try:
        res = http.get(path, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise CollectError(f"{path}: {type(exc).__name__}: {exc}") from None
    if res.status_code != 200:
        try:
            err = res.json()
            detail = f"{err['code']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            err, detail = {}, res.text[:200]
        if res.status_code == 404 and err.get("code") != "EXPORT_SOURCE_UNKNOWN":
            raise NotServed(f"{path}: not served here")
        raise CollectError(f"{path}: HTTP {res.status_code} {detail}")
    return res.json()
