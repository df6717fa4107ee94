"""Readable tables and ``--json`` output for commands and benchmarks.

The JSON interface is stable: each table is one key (its ``key``, snake_case, never a
display title or a path) holding a list of records whose keys are the columns in
snake_case with units in the name (``"timing MAE (ms)"`` -> ``timing_mae_ms``); a table's
notes go under ``notes.<key>``; ``extra`` adds top-level keys (also snake_case).
"""
from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """One printed table: a title, column names and rows of cells.

    ``key`` names the table in ``--json`` output (default: the title in snake_case;
    give one whenever the title holds a file name or other changing text).
    """

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key: str | None = None

    @property
    def json_key(self) -> str:
        return snake(self.key or self.title)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table {self.title!r} has {len(self.columns)} columns")
        self.rows.append(list(cells))

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts keyed by the snake_case column names."""
        keys = [snake(c) for c in self.columns]
        return [dict(zip(keys, row)) for row in self.rows]


def snake(text: str) -> str:
    """A display name as a snake_case JSON key, units kept: ``"timing MAE (ms)"`` -> ``"timing_mae_ms"``.

    Examples
    --------
    >>> snake("timing MAE (ms)"), snake("x real time"), snake("osc Hz"), snake("late_rows")
    ('timing_mae_ms', 'x_real_time', 'osc_hz', 'late_rows')
    """
    s = str(text).replace("%", " pct ").replace("+", " plus ")
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()
    return s or "value"


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
        payload: dict[str, Any] = {t.json_key: t.records() for t in tables}
        for t in tables:
            if t.notes:
                payload.setdefault("notes", {})[t.json_key] = t.notes
        payload.update({snake(k): v for k, v in (extra or {}).items()})
        stream.write(json.dumps(_clean(payload), indent=1) + "\n")
        return
    try:
        from rich.console import Console
        from rich.table import Table as RichTable
        # piped or redirected: as wide as the table needs (never cut); a terminal: its width
        tty = hasattr(stream, "isatty") and stream.isatty()
        console = Console(file=stream, width=max(100, Console().width) if tty else 100_000, soft_wrap=not tty)
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
