"""The payment gateway assembled on its own store."""

from __future__ import annotations

from ..common.db import make_engine
from ..common.settings import Settings
from .gateway import Behaviour, Gateway
from .tables import metadata


def build_payment(settings: Settings) -> Gateway:
    return Gateway(make_engine(settings, "payment", metadata), Behaviour())
