"""Every summary table also as a spreadsheet (.xlsx beside the .csv) for those who open
tables in Excel or WPS rather than read CSV: units in the headers, the first row frozen."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from twin.results.kpis import KPI_UNITS

_SUFFIX_UNITS = (("_per_s", "/s"), ("_fen", "fen"), ("_yuan", "yuan"), ("_hours", "h"),
                 ("_millions", "millions"), ("_per_year", "a year"), ("_per_day", "a day"))
_SHARES = ("adoption", "within_target", "within_low", "within_high", "share", "utilisation")
_MINUTES = ("wait", "visit_time", "time_saved", "minutes", "ci_low", "ci_high", "deferral",
            "doctor_time", "consult", "service_mean", "mean", "p50", "p90", "p95")


def unit_of(column: str) -> str:
    """The unit of a summary column, read from the KPI table or its name."""
    base = column.removesuffix("_low").removesuffix("_high")
    if base in KPI_UNITS:
        return KPI_UNITS[base]
    for suffix, unit in _SUFFIX_UNITS:
        if column.endswith(suffix):
            return unit
    if any(s in column for s in _SHARES):
        return "share"
    if any(m in column for m in _MINUTES):
        return "min"
    return ""


def write_table(df: pd.DataFrame, path: Path) -> list[Path]:
    """``path`` (.csv) as it is, and the same table as .xlsx with units in the headers."""
    df.to_csv(path, index=False)
    xlsx = path.with_suffix(".xlsx")
    headed = df.rename(columns={c: f"{c} ({unit_of(c)})" if unit_of(c) else c
                                for c in df.columns})
    with pd.ExcelWriter(xlsx, engine="openpyxl") as writer:
        headed.to_excel(writer, index=False, sheet_name=path.stem[:31])
        sheet = writer.sheets[path.stem[:31]]
        sheet.freeze_panes = "A2"
        for column in sheet.columns:
            width = max(len(str(c.value or "")) for c in column[:200])
            sheet.column_dimensions[column[0].column_letter].width = min(max(width + 2, 8), 60)
    return [path, xlsx]
