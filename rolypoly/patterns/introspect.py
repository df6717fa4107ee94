"""Introspection: propose one drum's part from another's, from tables of real bars.

A bar of one drum is a binary pattern of ``steps`` (16, or 32 for two-bar patterns)
hashed as ``sum(2**i)`` over the steps ``i`` that hold a hit (first step = lowest bit).
From a corpus of bars (GMD train, optionally widened with MIDI files such as bars
sampled from our own free-mode model) we count, for every ordered pair of drums
``(a, b)``, how often ``b`` played ``q`` in bars where ``a`` played ``p`` -- the
conditional ``P(q | a=p, b)`` -- and for every drum how bar ``p`` was followed by
bar ``q``.  The counts live in SQLite (one clustered index per table), built once and
rebuilt only when the inputs change.

Queries always answer.  The source pattern is looked up exactly; when it was never
seen, the seen source patterns at the smallest Hamming distance are pooled
(``"hamming-1"``, ``"hamming-2"``, ...); beyond ``max_hamming`` the marginal of ``b``
answers (``"marginal"``).  Every :class:`Answer` says which level answered.

Examples
--------
>>> table = PatternTable.open(cfg)                                  # doctest: +SKIP
>>> kick = parse_pattern("x---x---x---x---")                        # doctest: +SKIP
>>> ans = table.ask("kick", "snare", kick, rng=np.random.default_rng(0))  # doctest: +SKIP
>>> format_pattern(ans.pattern), ans.level                          # doctest: +SKIP
('----x-------x---', 'exact')
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import IntrospectError, RolypolyError
from rolypoly.io import atomic_path
from rolypoly.score.drums import DRUMS, N_DRUMS, drum_index

#: Bump when the database layout or what goes into it changes (forces a rebuild).
SCHEMA_VERSION = 1
STEP_CHOICES = (16, 32)
HIT_CHARS = frozenset("xX#1")
REST_CHARS = frozenset("-.0")
# Visual separators allowed inside a pattern string ("x---x---|x---x---").
SEP_CHARS = frozenset(" |_")
MARGINAL = "marginal"
EXACT = "exact"
_CACHE_SIZE = 8192


# --------------------------------------------------------------------------- patterns

def parse_pattern(text: str, steps: int | None = None) -> int:
    """A pattern string as its integer hash.

    ``x`` (also ``X``, ``#``, ``1``) is a hit, ``-`` (also ``.``, ``0``) a rest; spaces,
    ``|`` and ``_`` are ignored as visual separators.  The first character is step 0
    (the lowest bit).

    Parameters
    ----------
    text : str
        16 or 32 steps.
    steps : int, optional
        Require exactly this many steps.

    Raises
    ------
    IntrospectError
        A character that is neither hit nor rest (named with its position), or the wrong length.

    Examples
    --------
    >>> parse_pattern("x---x---x---x---")
    4369
    >>> parse_pattern("----x-------x---")
    4112
    """
    if not isinstance(text, str):
        raise IntrospectError(f"pattern must be a string of x and -, got {type(text).__name__}")
    value = 0
    n = 0
    for pos, ch in enumerate(text, start=1):
        if ch in SEP_CHARS:
            continue
        if ch in HIT_CHARS:
            value |= 1 << n
        elif ch not in REST_CHARS:
            raise IntrospectError(f"pattern {text!r}: bad character {ch!r} at position {pos} "
                                  f"(use x for a hit and - for a rest)")
        n += 1
    allowed = (steps,) if steps else STEP_CHOICES
    if n not in allowed:
        want = " or ".join(str(s) for s in allowed)
        raise IntrospectError(f"pattern {text!r} has {n} steps; expected {want}")
    return value


def format_pattern(value: int, steps: int = 16) -> str:
    """The string form of a pattern hash.

    >>> format_pattern(4369)
    'x---x---x---x---'
    """
    return "".join("x" if (int(value) >> i) & 1 else "-" for i in range(steps))


def check_pattern(value, steps: int) -> int:
    """A pattern given as an int (or a string) validated for ``steps`` steps."""
    if isinstance(value, str):
        return parse_pattern(value, steps)
    try:
        ivalue = int(value)
    except (TypeError, ValueError):
        raise IntrospectError(f"pattern {value!r} is neither an integer nor a pattern string") from None
    if ivalue != value or not (0 <= ivalue < (1 << steps)):
        raise IntrospectError(f"pattern {value!r} is out of range for {steps} steps (0..{(1 << steps) - 1})")
    return ivalue


def bar_patterns(vel: np.ndarray, phase: np.ndarray, bar: np.ndarray, n_bars: int | None = None) -> np.ndarray:
    """16-step patterns of every bar and drum from score-like rows.

    Every meter is reduced to 16 steps a bar (step = round(phase * 16)); a hit that
    rounds onto the next bar line belongs to the next bar's first step.

    Parameters
    ----------
    vel : (N, 9) velocities (0 = silent)
    phase : (N,) position in the bar in [0, 1)
    bar : (N,) bar index
    n_bars : number of bars to return (default: enough for every hit)

    Returns
    -------
    (n_bars, 9) int64 pattern hashes (all-silent bars included).

    Examples
    --------
    >>> vel = np.zeros((2, 9)); vel[0, 0] = vel[1, 1] = 100
    >>> bar_patterns(vel, np.array([0.0, 0.25]), np.array([0, 0]))[0, :2]
    array([ 1, 16])
    """
    vel = np.asarray(vel)
    step = np.rint(np.asarray(phase, dtype=np.float64) * 16).astype(np.int64)
    b = np.asarray(bar, dtype=np.int64) + step // 16
    step %= 16
    if n_bars is None:
        n_bars = int(b.max()) + 1 if len(b) else 0
    out = np.zeros((n_bars, N_DRUMS), dtype=np.int64)
    keep = b < n_bars
    for d in range(N_DRUMS):
        hit = (vel[:, d] > 0) & keep
        np.bitwise_or.at(out[:, d], b[hit], np.left_shift(np.int64(1), step[hit]))
    return out


def windows(patterns16: np.ndarray, steps: int) -> np.ndarray:
    """Patterns of ``steps`` from consecutive 16-step bars (32 = bar i and bar i+1, sliding)."""
    if steps == 16:
        return patterns16
    if len(patterns16) < 2:
        return patterns16[:0]
    return patterns16[:-1] | (patterns16[1:] << 16)


# --------------------------------------------------------------------------- building

@dataclass
class Corpus:
    """Bar patterns grouped by take: a list of (n_bars, 9) arrays of ``steps``-step patterns."""

    takes: list[np.ndarray]
    steps: int
    key: str
    description: str

    def pairs(self) -> np.ndarray:
        """(n, 9) patterns of every bar (window) where at least one drum plays."""
        parts = [w[w.any(axis=1)] for w in self.takes if len(w)]
        return np.concatenate(parts) if parts else np.zeros((0, N_DRUMS), np.int64)

    def transitions(self) -> tuple[np.ndarray, np.ndarray]:
        """(this, next) pattern arrays of consecutive non-silent bars (non-overlapping for 32 steps)."""
        hop = self.steps // 16
        a, b = [], []
        for w in self.takes:
            if len(w) <= hop:
                continue
            x, y = w[:-hop], w[hop:]
            ok = x.any(axis=1) & y.any(axis=1)
            a.append(x[ok])
            b.append(y[ok])
        if not a:
            empty = np.zeros((0, N_DRUMS), np.int64)
            return empty, empty
        return np.concatenate(a), np.concatenate(b)


def corpus_from_patterns(takes16: list[np.ndarray], steps: int = 16, key: str = "",
                         description: str = "patterns") -> Corpus:
    """A corpus from per-take 16-step bar patterns (see :func:`bar_patterns`)."""
    if steps not in STEP_CHOICES:
        raise IntrospectError(f"steps must be one of {STEP_CHOICES}, got {steps}")
    return Corpus([windows(np.asarray(t, dtype=np.int64), steps) for t in takes16], steps, key, description)


def _counts(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Rows (value, count) or (x, y, count) of distinct values."""
    if y is None:
        u, n = np.unique(x, return_counts=True)
        return np.stack([u, n], axis=1)
    u, n = np.unique(np.stack([x, y], axis=1), axis=0, return_counts=True)
    return np.concatenate([u, n[:, None]], axis=1)


# Kinds of distribution in the ``counts`` table.
PAIR, NEXT, MARG = 0, 1, 2
_KIND = {"pair": PAIR, "next": NEXT, "marginal": MARG}

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One row per (distribution, answer pattern q) with its count n and the running total
-- cum (counts up to and including this row, in q order, within the distribution).
-- kind 0: P(q | drum a plays p) for drum b; kind 1: P(next bar q | bar p) of drum a (b = a);
-- kind 2: marginal of drum a (b = a, p = 0).
CREATE TABLE counts (kind INTEGER NOT NULL, a INTEGER NOT NULL, b INTEGER NOT NULL, p INTEGER NOT NULL,
                     q INTEGER NOT NULL, n INTEGER NOT NULL, cum INTEGER NOT NULL,
                     PRIMARY KEY (kind, a, b, p, q)) WITHOUT ROWID;
-- A weighted draw is one range seek: the first row whose cum exceeds a uniform integer.
CREATE UNIQUE INDEX counts_by_cum ON counts (kind, a, b, p, cum);
"""


def _rows(kind: int, a: int, b: int, p: np.ndarray, q: np.ndarray):
    """Rows of the counts table for one (kind, a, b): distinct (p, q) with counts and running totals."""
    rows = _counts(p, q)  # sorted by p, then q
    if not len(rows):
        return []
    n = rows[:, 2]
    cum = np.cumsum(n)
    first = np.r_[True, rows[1:, 0] != rows[:-1, 0]]
    base = np.maximum.accumulate(np.where(first, cum - n, 0))
    cum = cum - base
    return [(kind, a, b, int(pp), int(qq), int(nn), int(cc)) for (pp, qq, nn), cc in zip(rows, cum)]


def build_table(path: str | os.PathLike, corpus: Corpus, show_progress: bool = False) -> dict:
    """Count the corpus into a fresh SQLite database at ``path`` (written atomically).

    Returns
    -------
    dict with ``bars``, ``transitions``, ``pair_rows``, ``next_rows``, ``seconds``.

    Examples
    --------
    >>> c = corpus_from_patterns([np.array([[1, 16, 0, 0, 0, 0, 0, 0, 0]])])
    >>> build_table("/tmp/doc_patterns.sqlite", c)["bars"]
    1
    """
    from rolypoly.report import progress
    t0 = time.perf_counter()
    path = Path(path)
    bars = corpus.pairs()
    this, nxt = corpus.transitions()
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        insert = "INSERT INTO counts VALUES (?,?,?,?,?,?,?)"
        try:
            con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
            pair_rows = next_rows = 0
            jobs = [(a, b) for a in range(N_DRUMS) for b in range(N_DRUMS) if a != b]
            for a, b in progress(jobs, total=len(jobs), desc="pattern tables", disable=not show_progress or None):
                rows = _rows(PAIR, a, b, bars[:, a], bars[:, b])
                con.executemany(insert, rows)
                pair_rows += len(rows)
            for d in range(N_DRUMS):
                rows = _rows(NEXT, d, d, this[:, d], nxt[:, d])
                con.executemany(insert, rows)
                next_rows += len(rows)
                con.executemany(insert, _rows(MARG, d, d, np.zeros(len(bars), np.int64), bars[:, d]))
            stats = {"bars": int(len(bars)), "transitions": int(len(this)), "pair_rows": pair_rows,
                     "next_rows": next_rows}
            meta = {"schema": str(SCHEMA_VERSION), "steps": str(corpus.steps), "input_key": corpus.key,
                    "corpus": corpus.description, "built": time.strftime("%Y-%m-%d %H:%M:%S"),
                    **{k: str(v) for k, v in stats.items()}}
            con.executemany("INSERT INTO meta VALUES (?,?)", meta.items())
            con.commit()
            con.execute("ANALYZE")
            con.commit()
        finally:
            con.close()
    stats["seconds"] = time.perf_counter() - t0
    return stats


def db_path(cfg) -> Path:
    """The database file for a config: ``introspect.db``, with ``-32`` before the suffix for 32 steps."""
    from rolypoly.config import resolve_path
    path = resolve_path(cfg.introspect.db)
    steps = _steps(cfg)
    return path if steps == 16 else path.with_name(f"{path.stem}-{steps}{path.suffix}")


def _steps(cfg) -> int:
    steps = cfg.introspect.steps
    if steps not in STEP_CHOICES:
        raise IntrospectError(f"introspect.steps must be 16 or 32, got {steps!r}")
    return int(steps)


def _extra_files(cfg) -> list[Path]:
    """MIDI files named by ``introspect.extra_midi`` (files or folders of .mid)."""
    from rolypoly.config import resolve_path
    files: list[Path] = []
    for item in cfg.introspect.get("extra_midi") or []:
        p = resolve_path(item)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in (".mid", ".midi")))
        elif p.is_file():
            files.append(p)
        else:
            raise IntrospectError(f"introspect.extra_midi: {p} is neither a MIDI file nor a folder")
    return files


#: The compact table shipped with the project: GMD train bars as 16-step patterns per take.
SHIPPED_TABLE = Path(__file__).resolve().parents[2] / "data" / "patterns_gmd_train.npz"
SHIPPED_CREDIT = ("Bar patterns counted from the train split of the Groove MIDI Dataset "
                  "(Gillick, Roberts, Engel, Eck, Bamman: Learning to Groove with Inverse Sequence "
                  "Transformations, ICML 2019), CC BY 4.0")


def gmd_train_patterns(cfg, show_progress: bool = False) -> tuple[list[np.ndarray], str]:
    """Per-take 16-step bar patterns of GMD train (``introspect.max_takes`` limits them) and a key.

    Raises
    ------
    DataError
        GMD is missing.
    """
    from rolypoly.score import gmd
    root = gmd.resolve_root(cfg.data)
    takes, cache_file, _ = gmd.prepare(root, cfg.cache_dir, "16", float(cfg.data.min_duration_s), show_progress)
    train = takes.split("train")
    limit = cfg.introspect.get("max_takes")
    n = len(train) if limit is None else min(len(train), int(limit))
    per_take = []
    for i in range(n):
        r = train.rows(i)
        per_take.append(bar_patterns(r["vel"], r["phase"], r["bar"]))
    return per_take, f"{Path(cache_file).name}|{n}"


def write_shipped_table(per_take: list[np.ndarray], key: str, path: str | os.PathLike = SHIPPED_TABLE) -> Path:
    """Save per-take bar patterns as the compact shipped table (a compressed ``.npz``, atomically).

    Examples
    --------
    >>> write_shipped_table([np.array([[1, 16, 0, 0, 0, 0, 0, 0, 0]])], "doc", "/tmp/doc_table.npz").name
    'doc_table.npz'
    >>> len(read_shipped_table("/tmp/doc_table.npz")[0])
    1
    """
    path = Path(path)
    lengths = np.array([len(t) for t in per_take], np.int32)
    bars = np.concatenate(per_take).astype(np.uint16) if per_take else np.zeros((0, N_DRUMS), np.uint16)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, bars=bars, lengths=lengths, key=np.array(key), credit=np.array(SHIPPED_CREDIT),
                            drums=np.array(DRUMS))
    return path


def read_shipped_table(path: str | os.PathLike = SHIPPED_TABLE) -> tuple[list[np.ndarray], str]:
    """The shipped table's per-take bar patterns and its key.

    Raises
    ------
    IntrospectError
        The file is missing or not such a table.
    """
    path = Path(path)
    try:
        with np.load(path) as z:
            bars, lengths, key = z["bars"].astype(np.int64), z["lengths"], str(z["key"])
            drums = tuple(str(d) for d in z["drums"])
    except FileNotFoundError:
        raise IntrospectError(f"{path}: the shipped pattern table is missing") from None
    except (OSError, KeyError, ValueError) as exc:
        raise IntrospectError(f"{path}: not a pattern table ({exc})") from None
    if drums != DRUMS or bars.ndim != 2 or bars.shape[1] != N_DRUMS or int(lengths.sum()) != len(bars):
        raise IntrospectError(f"{path}: pattern table does not match the nine drum classes")
    return np.split(bars, np.cumsum(lengths)[:-1]) if len(lengths) else [], key


def load_corpus(cfg, show_progress: bool = False) -> Corpus:
    """The configured corpus: GMD train bars (``introspect.max_takes`` limits them) plus ``extra_midi``.

    Without GMD on disk the compact table shipped in ``data/`` (:data:`SHIPPED_TABLE`,
    GMD train counted the same way) stands in for it.

    Raises
    ------
    DataError
        GMD is missing and so is the shipped table.
    """
    from rolypoly.errors import DataError
    from rolypoly.score.midi import read_score
    steps = _steps(cfg)
    try:
        per_take, source = gmd_train_patterns(cfg, show_progress)
        what = "GMD train"
    except DataError as exc:
        if not SHIPPED_TABLE.is_file():
            raise
        try:
            per_take, source = read_shipped_table(SHIPPED_TABLE)
        except IntrospectError as bad:
            raise DataError(f"{exc}; and {bad}") from None
        what = "shipped GMD train table"
    n = len(per_take)
    h = hashlib.sha1(f"v{SCHEMA_VERSION}|{steps}|{source}".encode())
    extra = _extra_files(cfg)
    for f in extra:
        h.update(f.read_bytes())
        score = read_score(f, warn_unknown=False)
        per_take.append(bar_patterns(score.vel, score.phase, score.bar))
    desc = f"{what} ({n} takes)" + (f" + {len(extra)} MIDI files" if extra else "")
    return corpus_from_patterns(per_take, steps, h.hexdigest()[:16], desc)


# --------------------------------------------------------------------------- queries

@dataclass(frozen=True)
class Answer:
    """A proposed pattern.

    Attributes
    ----------
    pattern : int        the pattern hash (:func:`format_pattern` shows it)
    level : str          which back-off level answered: "exact", "hamming-K" or "marginal"
    probability : float  its chance under that level's distribution (the excluded answer removed)
    """

    pattern: int
    level: str
    probability: float
    steps: int = 16

    def __str__(self) -> str:
        return format_pattern(self.pattern, self.steps)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


class PatternTable:
    """Read-only, thread-safe queries on a pattern database.

    Use :meth:`open` with a config (builds or repairs the database as needed) or the
    constructor on an existing file.  A weighted query costs a few index seeks
    whatever the size of the distribution: a back-off level pooling several seen
    source patterns is a mixture, so one draws a source by its count, then an answer
    within it.

    Parameters
    ----------
    path : the SQLite file
    max_hamming : largest Hamming distance searched before the marginal answers
    seed : seed of the generator used when a query passes no ``rng``
    max_neighbours : at one distance, pool at most this many (the most frequent) sources
    """

    def __init__(self, path: str | os.PathLike, max_hamming: int = 4, seed: int | None = None,
                 max_neighbours: int = 64):
        self.path = Path(path)
        if not self.path.is_file():
            raise IntrospectError(f"{self.path}: no pattern database (run: rolypoly introspect build)")
        self.max_hamming = int(max_hamming)
        self.max_neighbours = int(max_neighbours)
        self.rng = np.random.default_rng(seed)
        self.build_stats: dict | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        con = None
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self.info = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if self.info.get("schema") != str(SCHEMA_VERSION):
                raise IntrospectError(f"{self.path}: database schema {self.info.get('schema')!r}, "
                                      f"expected {SCHEMA_VERSION} (rebuild it)")
            self.steps = int(self.info["steps"])
            # Every count, in primary-key order, for in-memory draws (a few MB).
            rows = con.execute("SELECT kind, a, b, p, q, n, cum FROM counts ORDER BY kind, a, b, p, q").fetchall()
            marg = con.execute("SELECT a, q, n FROM counts WHERE kind=? ORDER BY a, q", (MARG,)).fetchall()
            nexts = con.execute("SELECT a, p, MAX(cum) FROM counts WHERE kind=? GROUP BY a, p", (NEXT,)).fetchall()
        except IntrospectError:
            con.close()
            raise
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            if con is not None:
                con.close()
            raise IntrospectError(f"{self.path}: corrupt pattern database ({exc})") from None
        self._con = con
        self._groups = self._group(rows)
        self._empty = (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        # In memory: each drum's marginal (its patterns are also the seen sources of the
        # pair distributions, its counts their totals) and the seen sources of the
        # next-bar distributions, so the Hamming search never touches SQL.
        self._marginal = [self._split(marg, d) for d in range(N_DRUMS)]
        self._next_sources = [self._split(nexts, d) for d in range(N_DRUMS)]
        self._pair_index = [{int(p): i for i, p in enumerate(m[0])} for m in self._marginal]
        self._next_index = [{int(p): i for i, p in enumerate(m[0])} for m in self._next_sources]
        if not any(len(m[0]) for m in self._marginal):
            raise IntrospectError(f"{self.path}: pattern database is empty")

    @staticmethod
    def _group(rows) -> dict:
        """(kind, a, b) -> (sorted keys p << 32 | q, q, n, cum) arrays."""
        arr = np.array(rows, dtype=np.int64).reshape(-1, 7)
        if not len(arr):
            return {}
        gid = arr[:, 0] * N_DRUMS * N_DRUMS + arr[:, 1] * N_DRUMS + arr[:, 2]
        cuts = np.flatnonzero(np.diff(gid)) + 1
        groups = {}
        for part in np.split(arr, cuts):
            keys = (part[:, 3].astype(np.uint64) << np.uint64(32)) | part[:, 4].astype(np.uint64)
            groups[(int(part[0, 0]), int(part[0, 1]), int(part[0, 2]))] = (
                keys, part[:, 4].copy(), part[:, 5].copy(), part[:, 6].copy())
        return groups

    @staticmethod
    def _split(rows, d):
        sel = [(p, n) for dd, p, n in rows if dd == d]
        if not sel:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        arr = np.array(sel, dtype=np.int64)
        return arr[:, 0].astype(np.uint64), arr[:, 1]

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, cfg, rebuild: str = "auto", show_progress: bool = False) -> "PatternTable":
        """The configured table, built when missing, corrupt or outdated.

        Parameters
        ----------
        cfg : composed config (``introspect.*``, ``data.*``, ``cache_dir``)
        rebuild : "auto" (when needed), "always", or "never" (use the file as is)

        Raises
        ------
        IntrospectError
            No usable database and the corpus to build one is missing.

        Examples
        --------
        >>> table = PatternTable.open(load_config([]))     # doctest: +SKIP
        """
        if rebuild not in ("auto", "always", "never"):
            raise IntrospectError(f"rebuild must be auto, always or never, got {rebuild!r}")
        path = db_path(cfg)
        kw = {"max_hamming": int(cfg.introspect.max_hamming), "seed": cfg.introspect.seed,
              "max_neighbours": int(cfg.introspect.max_neighbours)}
        if rebuild == "never":
            return cls(path, **kw)
        if path.is_file() and not _is_sqlite(path):  # a user's file named by mistake is never rebuilt over
            raise IntrospectError(f"{path}: not an SQLite pattern database; it is left alone "
                                  f"(point introspect.db at a new file)")
        corpus = None
        problem = None
        try:
            corpus = load_corpus(cfg, show_progress=show_progress)
        except RolypolyError as exc:  # no GMD here: an existing database is still usable
            if rebuild == "always":
                raise IntrospectError(f"cannot build the pattern database: {exc}") from None
            problem = exc
        if rebuild == "auto" and path.is_file():
            try:
                table = cls(path, **kw)
                if corpus is None or (table.info.get("input_key") == corpus.key and table.steps == corpus.steps):
                    return table
                table.close()
            except IntrospectError as exc:
                if corpus is None:
                    raise IntrospectError(f"{exc}; cannot rebuild it: {problem}") from None
                warnings.warn(f"{exc}; rebuilding it", stacklevel=2)
        if corpus is None:
            raise IntrospectError(f"{path}: no pattern database and nothing to build it from: {problem}")
        stats = build_table(path, corpus, show_progress=show_progress)
        table = cls(path, **kw)
        table.build_stats = stats
        return table

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ SQL
    def _sql(self, sql: str, args: tuple) -> list:
        try:
            with self._lock:
                return self._con.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise IntrospectError(f"{self.path}: query failed ({exc}); rebuild the database "
                                  f"(rolypoly introspect build --force)") from None

    def distribution(self, kind: str, a: int, b: int, sources) -> tuple[np.ndarray, np.ndarray]:
        """Patterns and pooled counts of the ``kind`` distributions of the given source patterns."""
        k = _KIND[kind]
        sources = tuple(int(s) for s in sources)
        key = (k, a, b, sources)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        marks = ",".join("?" * len(sources))
        rows = self._sql(f"SELECT q, SUM(n) FROM counts WHERE kind=? AND a=? AND b=? AND p IN ({marks}) "
                         f"GROUP BY q ORDER BY q", (k, a, b, *sources))
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
        out = (arr[:, 0], arr[:, 1])
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = out
        return out

    # ------------------------------------------------------------------ back-off
    def levels(self, kind: str, a: int, b: int, pattern: int):
        """Yield ``(level, kind, a, b, sources, totals)`` from the most to the least specific level.

        ``sources`` are the seen source patterns pooled at that level and ``totals`` their
        counts; the last level is the marginal of ``b`` (one source, pattern 0).
        """
        seen, weight = self._marginal[a] if kind == "pair" else self._next_sources[a]
        i = (self._pair_index if kind == "pair" else self._next_index)[a].get(pattern)
        if i is not None:  # the common case needs no distance computation
            yield EXACT, kind, a, b, seen[i:i + 1].astype(np.int64), weight[i:i + 1]
        if len(seen):
            dist = np.bitwise_count(seen ^ np.uint64(pattern))
            near = (dist <= self.max_hamming) & (dist > 0)
            for k in np.unique(dist[near]):
                idx = np.nonzero(dist == k)[0]
                if len(idx) > self.max_neighbours:  # keep the best-attested neighbours
                    idx = idx[np.argsort(-weight[idx], kind="stable")[: self.max_neighbours]]
                yield f"hamming-{int(k)}", kind, a, b, seen[idx].astype(np.int64), weight[idx]
        mn = self._marginal[b][1]
        yield MARGINAL, "marginal", b, b, np.zeros(1, np.int64), np.array([mn.sum()], np.int64)

    def _draw(self, level, kind, a, b, sources, totals, exclude, gen) -> Answer | None:
        # All in memory (loaded at open): a few binary searches, no SQL, no per-answer loop.
        keys, q_of, n_of, cum_of = self._groups.get((_KIND[kind], a, b), self._empty)
        src = np.asarray(sources, dtype=np.uint64)
        lo = np.searchsorted(keys, src << np.uint64(32))
        skip_at = skip_n = None
        if exclude is not None:
            # Where each source answered the excluded pattern (its slot in the running totals).
            want = (src << np.uint64(32)) | np.uint64(exclude)
            j = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
            found = keys[j] == want if len(keys) else np.zeros(len(src), bool)
            skip_n = np.where(found, n_of[j] if len(keys) else 0, 0)
            skip_at = np.where(found, cum_of[j] - skip_n if len(keys) else 0, 0)
            totals = totals - skip_n
        total = int(totals.sum())
        if total <= 0:
            return None  # only the excluded answer at this level
        x = int(gen.random() * total)
        if len(src) == 1:
            i = 0
        else:  # a pooled level is a mixture: pick the source by its count, then the answer within it
            cum = np.cumsum(totals)
            i = int(np.searchsorted(cum, x, side="right"))
            x -= int(cum[i - 1]) if i else 0
        if skip_at is not None and skip_n[i] and x >= skip_at[i]:
            x += int(skip_n[i])  # step over the excluded answer's slot
        start = int(lo[i])
        end = start + int(np.searchsorted(keys[start:], (src[i] << np.uint64(32)) | np.uint64(0xFFFFFFFF),
                                          side="right"))
        j = start + int(np.searchsorted(cum_of[start:end], x, side="right"))
        q = int(q_of[j])
        if len(src) == 1:
            n = int(n_of[j])
        else:
            want = (src << np.uint64(32)) | np.uint64(q)
            jj = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
            n = int(np.where(keys[jj] == want, n_of[jj], 0).sum())
        return Answer(q, level, n / total, self.steps)

    def _best(self, level, kind, a, b, sources, totals, exclude, prior_drum) -> Answer | None:
        qs, ns = self.distribution(kind, a, b, sources)
        if exclude is not None:
            keep = qs != exclude
            qs, ns = qs[keep], ns[keep]
        if not len(qs):
            return None
        # Ties go to the pattern more common overall, then to the smaller hash (deterministic).
        mq, mn = self._marginal[prior_drum]
        pos = np.minimum(np.searchsorted(mq, qs.astype(np.uint64)), len(mq) - 1)
        prior = np.where(mq[pos] == qs.astype(np.uint64), mn[pos], 0)
        best = int(np.lexsort((qs, -prior, -ns))[0])
        return Answer(int(qs[best]), level, float(ns[best] / ns.sum()), self.steps)

    def _answer(self, kind, a, b, pattern, exclude, rng, greedy) -> Answer:
        pattern = check_pattern(pattern, self.steps)
        if exclude is not None:
            exclude = check_pattern(exclude, self.steps)
        if greedy:
            gen = None
        elif rng is None:
            gen = self.rng
        else:
            gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        for level in self.levels(kind, a, b, pattern):
            ans = self._best(*level, exclude, b) if greedy else self._draw(*level, exclude, gen)
            if ans is not None:
                return ans
        # Only reachable when the marginal holds nothing but the excluded pattern.
        return Answer(int(exclude), MARGINAL, 1.0, self.steps)

    def ask(self, src, dst, pattern, exclude=None, rng=None, greedy: bool = False) -> Answer:
        """A pattern for drum ``dst`` given that drum ``src`` plays ``pattern``.

        Parameters
        ----------
        src, dst : drum names or indices (different drums)
        pattern : int hash or pattern string of ``self.steps`` steps
        exclude : a pattern not to return (the previous answer, so repeated asks vary);
            when a level holds nothing else, the next level answers
        rng : ``numpy.random.Generator`` or int seed; default: the table's own generator
        greedy : return the most probable pattern instead of a weighted draw

        Returns
        -------
        Answer
            With the level that answered and the answer's probability there.

        Examples
        --------
        >>> table.ask("kick", "snare", "x---x---x---x---", rng=1)        # doctest: +SKIP
        Answer(pattern=4112, level='exact', probability=0.19, steps=16)
        """
        a, b = drum_index(src), drum_index(dst)
        if a == b:
            raise IntrospectError(f"source and target are both {DRUMS[a]}; use next_bar for the same drum")
        return self._answer("pair", a, b, pattern, exclude, rng, greedy)

    def next_bar(self, drum, pattern, exclude=None, rng=None, greedy: bool = False) -> Answer:
        """A pattern for the bar after one where ``drum`` plays ``pattern`` (arguments as :meth:`ask`)."""
        d = drum_index(drum)
        return self._answer("next", d, d, pattern, exclude, rng, greedy)

    def prior(self, drum) -> Answer:
        """The most common pattern of ``drum`` (the marginal-prior baseline)."""
        d = drum_index(drum)
        mq, mn = self._marginal[d]
        i = int(np.lexsort((mq, -mn))[0])
        return Answer(int(mq[i]), MARGINAL, float(mn[i] / mn.sum()), self.steps)

# --------------------------------------------------------------------------- scores

def score_patterns(score, steps: int = 16) -> np.ndarray:
    """(n_windows, 9) patterns of a :class:`~rolypoly.score.midi.Score`: per bar (16) or per bar pair (32)."""
    n_bars = int(score.bar.max()) + 1 if score.n_rows else 0
    p16 = bar_patterns(score.vel, score.phase, score.bar, n_bars)
    if steps == 16:
        return p16
    if n_bars % 2:
        p16 = np.concatenate([p16, np.zeros((1, N_DRUMS), np.int64)])
    return p16[0::2] | (p16[1::2] << 16)


def plan_parts(score, src, dsts, table: PatternTable, seed=None, per_bar: bool = False) -> dict[int, list]:
    """Answers for each target drum, window by window (a bar, or two for 32-step tables).

    By default one answer is drawn per distinct source pattern, so a repeated part
    gets a consistent answer; ``per_bar=True`` draws every window anew.  Windows where
    the whole kit is silent stay silent (``None``).

    Returns
    -------
    dict mapping each target drum index to a list of :class:`Answer` or None, one per window.
    """
    a = drum_index(src)
    targets = _targets(a, dsts)
    pats = score_patterns(score, table.steps)
    if not len(pats) or not pats[:, a].any():
        raise IntrospectError(f"{score.path or 'the score'}: no {DRUMS[a]} hits to generate from")
    rng = np.random.default_rng(seed)
    plan: dict[int, list] = {}
    for b in targets:
        memo: dict[int, Answer] = {}
        answers = []
        for w in range(len(pats)):
            if not pats[w].any():
                answers.append(None)
                continue
            p = int(pats[w, a])
            if per_bar or p not in memo:
                memo[p] = table.ask(a, b, p, rng=rng)
            answers.append(memo[p])
        plan[b] = answers
    return plan


def _targets(a: int, dsts) -> list[int]:
    if isinstance(dsts, (str, int)):
        dsts = [d for d in str(dsts).split(",") if d.strip()] if isinstance(dsts, str) else [dsts]
    targets = []
    for d in dsts:
        b = drum_index(d.strip() if isinstance(d, str) else d)
        if b == a:
            raise IntrospectError(f"target {DRUMS[b]} is also the source drum")
        if b not in targets:
            targets.append(b)
    if not targets:
        raise IntrospectError("no target drum given")
    return targets


def apply_parts(score, plan: dict[int, list], steps: int = 16, velocity: float | None = None):
    """A new score whose target drums play the planned patterns on the 16th grid.

    Other drums keep their performed times and velocities.  A target drum plays at its
    mean velocity in the score (the score's overall mean when it was silent, else 100),
    or ``velocity`` when given.
    """
    from rolypoly.score.midi import Note, score_from_notes
    tm = score.tempo
    hit = score.vel > 0
    overall = float(score.vel[hit].mean()) if hit.any() else 100.0
    notes = []
    times = score.hit_times_ms()
    for r, d in zip(*np.nonzero(hit)):
        if int(d) in plan:
            continue
        t = float(times[r, d]) / 1000.0
        notes.append(Note(int(round(tm.tick_at(t))), t, int(d), int(score.vel[r, d])))
    per = steps // 16
    for b, answers in plan.items():
        col = score.vel[:, b]
        v = velocity if velocity is not None else (float(col[col > 0].mean()) if (col > 0).any() else overall)
        v = int(np.clip(round(v), 1, 127))
        for w, ans in enumerate(answers):
            if ans is None:
                continue
            for s in range(steps):
                if not (ans.pattern >> s) & 1:
                    continue
                bar = w * per + s // 16
                start, end = tm.bar_start_tick(bar), tm.bar_start_tick(bar + 1)
                tick = int(round(start + (s % 16) * (end - start) / 16))
                notes.append(Note(tick, tm.seconds(tick), b, v))
    notes.sort(key=lambda n: (n.tick, n.drum))
    return score_from_notes(notes, tm, path=score.path, unknown=score.unknown_pitches)


def generate_for_score(score, src, dsts, table: PatternTable, seed=None, per_bar: bool = False):
    """A copy of ``score`` whose ``dsts`` parts are generated from its ``src`` part.

    Parameters
    ----------
    score : :class:`~rolypoly.score.midi.Score`
    src : source drum (name or index)
    dsts : target drums: a list, or a comma-separated string such as ``"snare,hihat"``
    table : :class:`PatternTable`
    seed : seed of the draws (same seed, same result)
    per_bar : draw every bar anew instead of once per distinct source pattern

    Returns
    -------
    Score

    Examples
    --------
    >>> out = generate_for_score(read_score("in.mid"), "kick", "snare,hihat", table, seed=0)  # doctest: +SKIP
    >>> out.write_midi("out.mid")                                                           # doctest: +SKIP
    """
    plan = plan_parts(score, src, dsts, table, seed=seed, per_bar=per_bar)
    return apply_parts(score, plan, table.steps)
