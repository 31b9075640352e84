"""The only door to the card network for clients: the twin, the load tests, benchmarks
and users. ``from services.sdk import ...`` gives

- the HTTP clients (:class:`AdminClient`, :class:`ChannelClient`, :class:`TerminalClient`)
  and :class:`SdkError`, the refusal with the server's stable ``code``;
- the codes a client sends (:mod:`.codes`: steps of care, terminal types);
- synthetic residents, seeding of a stack and the fusion job;
- a stack to talk to (:func:`start_in_thread`, :func:`spawn_server`, :func:`prepare_store`)
  and the demo of ``make run``; its settings from ``EHC_*`` (:func:`get_settings`, which
  raises :class:`SettingsInvalid` naming a refused variable).

The stack's parts are imported on first use, so that a load generator that only signs
requests does not load the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..rules.codes import Step, TerminalType
from .clients import (
    CST,
    AdminClient,
    ChannelClient,
    HospitalClient,
    ResidentClient,
    SdkError,
    TerminalClient,
    cst_days_since,
    cst_now_text,
    cst_today_text,
    explain,
    settle_bill,
)
from .fusion_job import card_ranges, fuse_all, todo
from .seeding import institution_code, insured_record, seed_stack, write_seed_file
from .synthetic import (
    CITY_AREA_CODES,
    SyntheticResident,
    generate_residents,
    residents_of_groups,
)

if TYPE_CHECKING:
    from ..common.settings import SettingsInvalid, get_settings
    from .demo import run_demo
    from .stack import (
        RunningStack,
        Settings,
        cpu_seconds,
        listen_problem,
        prepare_store,
        spawn_server,
        start_in_thread,
        stop_server,
        store_unreachable,
    )

_LAZY = {"RunningStack": ".stack", "Settings": ".stack", "prepare_store": ".stack",
         "cpu_seconds": ".stack", "listen_problem": ".stack",
         "spawn_server": ".stack", "start_in_thread": ".stack", "stop_server": ".stack",
         "store_unreachable": ".stack",
         "SettingsInvalid": "..common.settings", "get_settings": "..common.settings",
         "run_demo": ".demo"}

__all__ = [
    "CITY_AREA_CODES",
    "CST",
    "AdminClient",
    "ChannelClient",
    "HospitalClient",
    "ResidentClient",
    "RunningStack",
    "SdkError",
    "Settings",
    "SettingsInvalid",
    "Step",
    "SyntheticResident",
    "TerminalClient",
    "TerminalType",
    "card_ranges",
    "cpu_seconds",
    "cst_days_since",
    "cst_now_text",
    "cst_today_text",
    "explain",
    "fuse_all",
    "generate_residents",
    "get_settings",
    "institution_code",
    "insured_record",
    "listen_problem",
    "prepare_store",
    "residents_of_groups",
    "run_demo",
    "seed_stack",
    "settle_bill",
    "spawn_server",
    "start_in_thread",
    "stop_server",
    "store_unreachable",
    "todo",
    "write_seed_file",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
