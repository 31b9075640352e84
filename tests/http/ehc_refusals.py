"""What the EHC stack tests share: counting usage records, asserting a refusal that
wrote nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.healthcard.tables import usage_records
from services.sdk import SdkError


def usage_count(stack) -> int:
    hc = stack.app.state.systems["healthcard"]
    with hc.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(usage_records)).scalar_one()


def refused(code: str, stack, fn, *args, **kw) -> SdkError:
    before = usage_count(stack)
    with pytest.raises(SdkError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value
    assert usage_count(stack) == before, "a refused request wrote a usage record"
    return info.value
