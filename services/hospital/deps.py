"""Typed dependencies of the hospital service's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .system import HospitalSystem


def hospital(request: Request) -> HospitalSystem:
    return request.app.state.systems["hospital"]


Hospital = Annotated[HospitalSystem, Depends(hospital)]
