"""The auto-opening batch (``ehc fuse --all``) driven through the SDK: every issued e-SSC
holder without an EHC gets one opened and bound. Holders are split into disjoint ranges
of card numbers (by insurance region) that several workers take in parallel, page by
page; each page is one signed batch committed on both sides, so a crash loses at most
the pages in flight, and running again carries on (bound holders are no longer listed)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

from .clients import AdminClient

COUNTS = ("holders", "opened", "bound", "refused", "pending")


def card_ranges(regions: list[str]) -> list[tuple[str, str | None]]:
    """Disjoint (after, before) bounds covering every card number: e-SSC numbers begin
    with their 6-digit region, so one range per region (the first and last open-ended)."""
    bounds = sorted(set(regions))
    if len(bounds) < 2:
        return [("", None)]
    return [("", bounds[1]), *pairwise(bounds[1:]), (bounds[-1], None)]


def todo(essc: AdminClient) -> tuple[int, list[str]]:
    """(holders still to bind, approximately; the regions to split the work by)."""
    stats = essc.essc_stats()
    done = sum(stats["bindings_by_state"].values())
    return max(stats["cards_by_state"].get("1", 0) - done, 0), list(stats["insured_by_region"])


def fuse_all(ehc: AdminClient, essc: AdminClient, *, page: int = 1000, workers: int = 2,
             progress: Callable[[int], None] | None = None,
             refusals: list[dict[str, str]] | None = None) -> dict[str, int]:
    """Totals of the run; each refused holder (card number and reason) is appended to
    ``refusals`` when given (the run goes on for all the others)."""
    _, regions = todo(essc)
    totals = dict.fromkeys(COUNTS, 0)
    lock = threading.Lock()

    def run(bounds: tuple[str, str | None]) -> None:
        after, before = bounds
        while True:
            answer = ehc.fuse_page(after, page, before)
            if answer["next_after"] is None:
                return
            with lock:
                for k in COUNTS:
                    totals[k] += answer[k]
                if refusals is not None:
                    refusals.extend(answer.get("refusals", []))
            if progress:
                progress(answer["holders"])
            after = answer["next_after"]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(run, card_ranges(regions)):
            del result  # re-raises a worker's error here
    return totals
