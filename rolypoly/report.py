"""Readable tables and ``--json`` output for commands and benchmarks."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """One printed table: a title, column names and rows of cells."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table {self.title!r} has {len(self.columns)} columns")
        self.rows.append(list(cells))

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit(tables: list[Table] | Table, as_json: bool = False, extra: dict[str, Any] | None = None,
         stream=None) -> None:
    """Print tables with rich (or plain text), or one JSON object with ``--json``.

    The JSON object maps each table title to its list of row records; ``extra``
    adds top-level keys (summaries, protocol notes).
    """
    stream = stream or sys.stdout
    if isinstance(tables, Table):
        tables = [tables]
    if as_json:
        payload: dict[str, Any] = {t.title: t.records() for t in tables}
        for t in tables:
            if t.notes:
                payload.setdefault("notes", {})[t.title] = t.notes
        payload.update(extra or {})
        stream.write(json.dumps(_clean(payload), indent=1) + "\n")
        return
    try:
        from rich.console import Console
        from rich.table import Table as RichTable
        console = Console(file=stream, width=max(100, Console().width))
        for t in tables:
            rt = RichTable(title=t.title, title_justify="left")
            for c in t.columns:
                rt.add_column(str(c))
            for row in t.rows:
                rt.add_row(*[_cell(v) for v in row])
            console.print(rt)
            for note in t.notes:
                console.print(f"  {note}", highlight=False, markup=False)
        for key, value in (extra or {}).items():
            console.print(f"{key}: {value}", highlight=False, markup=False)
    except ImportError:  # rich is a dependency; plain text keeps errors readable without it
        for t in tables:
            stream.write(t.title + "\n" + "\t".join(t.columns) + "\n")
            for row in t.rows:
                stream.write("\t".join(_cell(v) for v in row) + "\n")
            for note in t.notes:
                stream.write(f"  {note}\n")
        for key, value in (extra or {}).items():
            stream.write(f"{key}: {value}\n")


def progress(iterable, total: int | None = None, desc: str = "", disable: bool | None = None):
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal unless forced)."""
    from tqdm.auto import tqdm
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False)
