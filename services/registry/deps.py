"""Typed dependencies of the registry's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .births import Births
from .deaths import Deaths
from .residents import RegistryService


def registry_service(request: Request) -> RegistryService:
    return request.app.state.systems["registry"]


Registry = Annotated[RegistryService, Depends(registry_service)]


def births_of(request: Request) -> Births:
    return request.app.state.systems["registry"].births


BirthsDep = Annotated[Births, Depends(births_of)]


def deaths_of(request: Request) -> Deaths:
    return request.app.state.systems["registry"].deaths


DeathsDep = Annotated[Deaths, Depends(deaths_of)]
