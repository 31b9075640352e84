"""What the EHC stack tests share: counting usage records, asserting a refusal that
wrote nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from services.healthcard.tables import usage_records
from services.sdk import SdkError


def usage_count(stack) -> int:
    hc = stack.app.state.systems["healthcard"]
    with hc.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(usage_records)).scalar_one()


def refusal_check(unchanged: Callable[[Any], Any]) -> Callable[..., SdkError]:
    """``refused(code, stack, fn, *args, **kw)``: ``fn`` is refused with ``code`` and
    ``unchanged(stack)`` (what a refusal must not write) is the same after."""
    def refused(code: str, stack, fn, *args, **kw) -> SdkError:
        before = unchanged(stack)
        with pytest.raises(SdkError) as info:
            fn(*args, **kw)
        assert info.value.code == code, info.value
        assert unchanged(stack) == before, "a refused request wrote something"
        return info.value
    return refused


refused = refusal_check(usage_count)
