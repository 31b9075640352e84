"""The tables every card system keeps for what the systems share, each in its own store:
its callers, its copy of the bindings, its SM2 system key, its audit chain heads, the
usage records and the audit seals received from the other side."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import MetaData, Table

from ..db import Export
from .audit import heads_table
from .binding import binding_tables
from .callers import CallerTables, caller_tables
from .feeds import SHARED_FIELDS, shared_usage_tables
from .seals import received_seals_table
from .system_key import system_key_table

SCAN = ("institution_code", "terminal_id", "terminal_type", "step", "code_kind")


class SharedTables(NamedTuple):
    caller_registry: CallerTables
    bindings: Table
    binding_batches: Table
    system_keys: Table
    audit_heads: Table
    shared_usage: Table
    sync_cursors: Table
    received_seals: Table


def shared_tables(metadata: MetaData) -> SharedTables:
    bindings, batches = binding_tables(metadata)
    shared, cursors = shared_usage_tables(metadata)
    return SharedTables(caller_tables(metadata), bindings, batches, system_key_table(metadata),
                        heads_table(metadata), shared, cursors,
                        received_seals_table(metadata))


def shared_exports(tables: SharedTables) -> dict[str, Export]:
    """What the data resources layer reads of the shared tables: the binding copies and
    the other side's usage records held here (pseudonyms only)."""
    return {
        "bindings": Export(tables.bindings, ("binding_id", "ehc_card_id", "empi",
                                             "ssc_card_no", "region", "state", "version",
                                             "updated_at"),
                           ("updated_at", "binding_id"), "updated_at"),
        "shared_usage": Export(tables.shared_usage, ("id", "source", "source_id",
                                                     *SHARED_FIELDS, "received_at"),
                               ("id",), "received_at"),
    }
