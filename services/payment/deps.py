"""Typed dependencies of the payment gateway's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .gateway import Gateway


def gateway(request: Request) -> Gateway:
    return request.app.state.systems["payment"]


PaymentGateway = Annotated[Gateway, Depends(gateway)]
