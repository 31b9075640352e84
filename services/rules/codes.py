"""Codes a client sends to the card network (the national EHC interface's values): the
stack checks them, the SDK sends them, the data layer's quality rules hold records to
them."""

from __future__ import annotations

from enum import IntEnum


class Step(IntEnum):
    """Step of care of a verification (usage record)."""

    OTHER = 0
    REGISTRATION = 10101
    DIAGNOSIS = 10102
    PHARMACY = 10103
    EXAMINATION = 10104
    PAYMENT = 10105
    PRESCRIPTION = 10106
    SURGERY = 10107


class TerminalType(IntEnum):
    MANUAL_WINDOW = 1
    SELF_SERVICE = 2
    OTHER = 99

