"""Typed dependencies of the SMS gateway's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .gateway import OutboxGateway


def gateway(request: Request) -> OutboxGateway:
    return request.app.state.systems["sms"]


Sms = Annotated[OutboxGateway, Depends(gateway)]
