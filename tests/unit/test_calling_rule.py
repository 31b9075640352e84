"""The outpatient calling rule (services.rules.calling), a pure function."""

from __future__ import annotations

import pytest

from services.rules.calling import HOLDER, REVISIT, WALK_IN, after_call, next_to_call


def call_sequence(waiting: list[int], ratio: int) -> list[int]:
    """Call everybody: the kinds in the order they are called."""
    left, row, out = list(waiting), 0, []
    while (kind := next_to_call((left[0], left[1], left[2]), row, ratio)) is not None:
        left[kind] -= 1
        row = after_call(kind, row)
        out.append(kind)
    return out


def test_nobody_waiting_calls_nobody() -> None:
    assert next_to_call((0, 0, 0), 0, 2) is None


def test_revisits_come_first() -> None:
    assert next_to_call((1, 5, 5), 0, 2) == REVISIT
    assert call_sequence([2, 1, 1], 2)[:2] == [REVISIT, REVISIT]


def test_holders_and_walk_ins_interleave_at_the_ratio() -> None:
    H, W = HOLDER, WALK_IN
    assert call_sequence([0, 4, 2], 2) == [H, H, W, H, H, W]
    assert call_sequence([0, 3, 3], 1) == [H, W, H, W, H, W]


def test_a_lone_queue_is_called_in_full() -> None:
    assert call_sequence([0, 5, 0], 2) == [HOLDER] * 5
    assert call_sequence([0, 0, 3], 2) == [WALK_IN] * 3


def test_a_revisit_does_not_reset_the_run_of_holders() -> None:
    assert after_call(REVISIT, 2) == 2 and after_call(WALK_IN, 2) == 0
    assert after_call(HOLDER, 2) == 3


def test_ratio_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="holders_per_walk_in"):
        next_to_call((0, 1, 1), 0, 0)
