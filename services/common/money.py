"""The amount limits of a visit, one set for every place that takes money: the fee upload,
the settlement (which checks again what an earlier version may have stored) and the
payment gateway. A visit within them can always be paid; one beyond them is refused
before anything is committed."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import Invalid

MAX_ITEM_FEN = 10**8  # one fee item: 1,000,000 yuan
MAX_VISIT_FEN = 10**9  # one visit, and so one payment: 10,000,000 yuan
MAX_ITEMS = 200  # fee items of one visit


def check_visit(amounts: Iterable[int]) -> int:
    """The visit's total, or ``AMOUNT_LIMIT`` naming the limit it breaks."""
    amounts = list(amounts)
    if not 1 <= len(amounts) <= MAX_ITEMS:
        raise Invalid("AMOUNT_LIMIT", f"a visit has 1 to {MAX_ITEMS} fee items")
    if any(not 0 <= a <= MAX_ITEM_FEN for a in amounts):
        raise Invalid("AMOUNT_LIMIT", f"a fee item is 0 to {MAX_ITEM_FEN} fen")
    total = sum(amounts)
    if total > MAX_VISIT_FEN:
        raise Invalid("AMOUNT_LIMIT", f"a visit's fees total at most {MAX_VISIT_FEN} fen "
                      f"(this one {total})")
    return total
