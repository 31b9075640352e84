"""Age groups, as the twin models them and as the data layer reports them: a child is
under 18, an elderly person 60 or over (the statutory age of the elderly in China); the
store sees only the group, never a birth date."""

from __future__ import annotations

from datetime import date

AGE_GROUPS = ("child", "adult", "elderly")
CHILD_UNDER, ELDERLY_FROM = 18, 60


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def age_group(birth: date | None, day: date) -> str | None:
    if birth is None:
        return None
    age = age_on(birth, day)
    return "child" if age < CHILD_UNDER else "elderly" if age >= ELDERLY_FROM else "adult"
