"""Tables and notices for the analyst reports: human column names, counts without
decimals, shares as percentages, no index column; a summary paragraph and a clear
banner when a run is too small to decide anything on."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from IPython.display import Markdown
from pandas.io.formats.style import Styler

COUNT, SHARE, MINUTES, MONEY, NUMBER = "{:,.0f}", "{:.0%}", "{:,.1f}", "{:,.0f}", "{:,.2f}"


def table(df: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> Styler:
    """``columns``: source column -> (the heading a reader sees, its format)."""
    shown = df[list(columns)].rename(columns={k: v[0] for k, v in columns.items()})
    formats = {heading: fmt for heading, fmt in columns.values()}
    return shown.style.format(formats, na_rep="–").hide(axis="index")


def quick_run_banner(reasons: list[str]) -> Markdown | None:
    """A banner for a run too small to decide on (None for a full one)."""
    if not reasons:
        return None
    return Markdown("> **Quick run, not for decisions**: " + "; ".join(reasons) + ". "
                    "The figures show what the report looks like; rerun with the defaults "
                    "(`make report`) before reading anything into them.")
