"""The outpatient calling rule: who a free doctor calls next.

Three kinds of patient wait for a doctor:

1. ``REVISIT``: a patient back with test results (seen once already);
2. ``HOLDER``: an appointment holder whose booked time has come (a holder is not in the
   queue before their time: "precise appointment" gives them that time);
3. ``WALK_IN``: a patient who registered on the day, in order of registration.

Revisits are called first. Then holders, in the order of their booked times, but after
``holders_per_walk_in`` holders in a row a waiting walk-in is called, so that walk-ins
are interleaved rather than starved at a busy hour (Chinese outpatient calling systems
interleave the two queues the same way). With no holder waiting, walk-ins are called in
order; with no walk-in waiting, holders are called one after another.
"""

from __future__ import annotations

REVISIT, HOLDER, WALK_IN = 0, 1, 2
KINDS = (REVISIT, HOLDER, WALK_IN)


def next_to_call(waiting: tuple[int, int, int], holders_in_a_row: int,
                 holders_per_walk_in: int) -> int | None:
    """The kind of patient to call next, or None when nobody waits.

    ``waiting``: how many revisits, holders and walk-ins wait; ``holders_in_a_row``:
    holders called since the last walk-in; ``holders_per_walk_in`` >= 1: how many holders
    may be called in a row while a walk-in waits."""
    if holders_per_walk_in < 1:
        raise ValueError("holders_per_walk_in must be at least 1")
    revisits, holders, walk_ins = waiting
    if revisits:
        return REVISIT
    if holders and (not walk_ins or holders_in_a_row < holders_per_walk_in):
        return HOLDER
    if walk_ins:
        return WALK_IN
    return None


def after_call(kind: int, holders_in_a_row: int) -> int:
    """The count of holders in a row once ``kind`` has been called."""
    if kind == HOLDER:
        return holders_in_a_row + 1
    return 0 if kind == WALK_IN else holders_in_a_row
