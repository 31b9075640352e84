"""Names the model, its results and its plots share: stations and walk slots."""

from __future__ import annotations

from enum import IntEnum


class StationName:
    """Station names (the ``station`` column of every frame)."""

    REGISTRATION_WINDOW = "registration window"
    KIOSK = "kiosk"
    PAYMENT_WINDOW = "payment window"
    PHARMACY_WINDOW = "pharmacy window"
    LAB = "lab"
    IMAGING = "imaging"
    CHECKIN_SCANNER = "check-in scanner"
    DOCTORS = "doctors: {department}"  # one station per department
    NAMED_DOCTOR = "doctors: {department} / doctor {number}"  # a named doctor's own queue


WINDOWS = (StationName.REGISTRATION_WINDOW, StationName.PAYMENT_WINDOW,
           StationName.PHARMACY_WINDOW)


class Walk(IntEnum):
    """Walk slots of a journey, each a sampled walk: the traditional flow uses all eight,
    the online flow at most four (to the doctor, the test, the revisit, the pharmacy) and
    the payment walks only when a phone payment falls back to a window."""

    TO_REGISTRATION = 0
    TO_DOCTOR = 1
    TO_FIRST_PAYMENT = 2
    TO_TEST = 3
    TO_REPORT = 4
    TO_REVISIT = 5
    TO_SECOND_PAYMENT = 6
    TO_PHARMACY = 7


WALKS = len(Walk)
