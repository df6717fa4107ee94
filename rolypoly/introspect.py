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

from rolypoly.drums import DRUMS, N_DRUMS, drum_index
from rolypoly.errors import DataError, IntrospectError, RolypolyError

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


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- P(q | a=p, b): clustered on (src, dst, p) so one source pattern is one index range.
CREATE TABLE pair (src INTEGER NOT NULL, dst INTEGER NOT NULL, p INTEGER NOT NULL, q INTEGER NOT NULL,
                   n INTEGER NOT NULL, PRIMARY KEY (src, dst, p, q)) WITHOUT ROWID;
-- P(next bar q | this bar p) per drum.
CREATE TABLE next (drum INTEGER NOT NULL, p INTEGER NOT NULL, q INTEGER NOT NULL, n INTEGER NOT NULL,
                   PRIMARY KEY (drum, p, q)) WITHOUT ROWID;
-- Marginal of each drum; also the seen source patterns of the pair table.
CREATE TABLE marginal (drum INTEGER NOT NULL, q INTEGER NOT NULL, n INTEGER NOT NULL,
                       PRIMARY KEY (drum, q)) WITHOUT ROWID;
CREATE INDEX next_sources ON next (drum, p, n);
"""


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    bars = corpus.pairs()
    this, nxt = corpus.transitions()
    con = sqlite3.connect(tmp)
    try:
        con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
        pair_rows = next_rows = 0
        jobs = [(a, b) for a in range(N_DRUMS) for b in range(N_DRUMS) if a != b]
        for a, b in progress(jobs, total=len(jobs), desc="pattern tables", disable=not show_progress or None):
            rows = _counts(bars[:, a], bars[:, b])
            con.executemany("INSERT INTO pair VALUES (?,?,?,?,?)",
                            ((a, b, int(p), int(q), int(n)) for p, q, n in rows))
            pair_rows += len(rows)
        for d in range(N_DRUMS):
            rows = _counts(this[:, d], nxt[:, d])
            con.executemany("INSERT INTO next VALUES (?,?,?,?)", ((d, int(p), int(q), int(n)) for p, q, n in rows))
            next_rows += len(rows)
            con.executemany("INSERT INTO marginal VALUES (?,?,?)",
                            ((d, int(q), int(n)) for q, n in _counts(bars[:, d])))
        stats = {"bars": int(len(bars)), "transitions": int(len(this)), "pair_rows": pair_rows,
                 "next_rows": next_rows}
        meta = {"schema": str(SCHEMA_VERSION), "steps": str(corpus.steps), "input_key": corpus.key,
                "corpus": corpus.description, "built": time.strftime("%Y-%m-%d %H:%M:%S"),
                **{k: str(v) for k, v in stats.items()}}
        con.executemany("INSERT INTO meta VALUES (?,?)", meta.items())
        con.commit()
        con.execute("ANALYZE")
        con.commit()
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, path)
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


def load_corpus(cfg, show_progress: bool = False) -> Corpus:
    """The configured corpus: GMD train bars (``introspect.max_takes`` limits them) plus ``extra_midi``.

    Raises
    ------
    DataError
        GMD is missing.
    """
    from rolypoly import gmd
    from rolypoly.score import read_score
    steps = _steps(cfg)
    root = gmd.resolve_root(cfg.data)
    takes, cache_file, _ = gmd.prepare(root, cfg.cache_dir, "16", float(cfg.data.min_duration_s), show_progress)
    train = takes.split("train")
    limit = cfg.introspect.get("max_takes")
    n = len(train) if limit is None else min(len(train), int(limit))
    per_take = []
    for i in range(n):
        r = train.rows(i)
        per_take.append(bar_patterns(r["vel"], r["phase"], r["bar"]))
    h = hashlib.sha1(f"v{SCHEMA_VERSION}|{steps}|{Path(cache_file).name}|{n}".encode())
    extra = _extra_files(cfg)
    for f in extra:
        h.update(f.read_bytes())
        score = read_score(f, warn_unknown=False)
        per_take.append(bar_patterns(score.vel, score.phase, score.bar))
    desc = f"GMD train ({n} takes)" + (f" + {len(extra)} MIDI files" if extra else "")
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


class PatternTable:
    """Read-only, thread-safe queries on a pattern database.

    Use :meth:`open` with a config (builds or repairs the database as needed) or the
    constructor on an existing file.

    Parameters
    ----------
    path : the SQLite file
    max_hamming : largest Hamming distance searched before the marginal answers
    seed : seed of the generator used when a query passes no ``rng``
    """

    def __init__(self, path: str | os.PathLike, max_hamming: int = 4, seed: int | None = None,
                 max_neighbours: int = 64):
        self.path = Path(path)
        if not self.path.is_file():
            raise IntrospectError(f"{self.path}: no pattern database (run: rolypoly introspect build)")
        self.max_hamming = int(max_hamming)
        self.max_neighbours = int(max_neighbours)
        self.rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        try:
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self.info = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
            if self.info.get("schema") != str(SCHEMA_VERSION):
                raise IntrospectError(f"{self.path}: database schema {self.info.get('schema')!r}, "
                                      f"expected {SCHEMA_VERSION} (rebuild it)")
            self.steps = int(self.info["steps"])
            marg = self._con.execute("SELECT drum, q, n FROM marginal ORDER BY drum, q").fetchall()
            nexts = self._con.execute("SELECT drum, p, SUM(n) FROM next GROUP BY drum, p").fetchall()
        except IntrospectError:
            self._con.close()
            raise
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            try:
                self._con.close()
            except Exception:
                pass
            raise IntrospectError(f"{self.path}: corrupt pattern database ({exc})") from None
        # In memory: the marginals (they also are the seen sources of the pair table) and
        # the seen sources of the next-bar table, so the Hamming search never touches SQL.
        self._marginal = [self._split(marg, d) for d in range(N_DRUMS)]
        self._next_sources = [self._split(nexts, d) for d in range(N_DRUMS)]
        if not any(len(m[0]) for m in self._marginal):
            raise IntrospectError(f"{self.path}: pattern database is empty")

    @staticmethod
    def _split(rows, d):
        sel = [(p, n) for dd, p, n in rows if dd == d]
        if not sel:
            return np.zeros(0, np.uint64), np.zeros(0, np.float64)
        arr = np.array(sel, dtype=np.int64)
        return arr[:, 0].astype(np.uint64), arr[:, 1].astype(np.float64)

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
        """
        if rebuild not in ("auto", "always", "never"):
            raise IntrospectError(f"rebuild must be auto, always or never, got {rebuild!r}")
        path = db_path(cfg)
        kw = {"max_hamming": int(cfg.introspect.max_hamming), "seed": cfg.introspect.seed,
              "max_neighbours": int(cfg.introspect.max_neighbours)}
        if rebuild == "never":
            return cls(path, **kw)
        corpus = None
        problem = None
        try:
            corpus = load_corpus(cfg, show_progress=show_progress)
        except (DataError, RolypolyError) as exc:
            if rebuild == "always":
                raise IntrospectError(f"cannot build the pattern database: {exc}") from None
            problem = exc
        if rebuild == "auto" and path.is_file():
            try:
                table = cls(path, **kw)
                if corpus is None or (table.info.get("input_key") == corpus.key
                                      and table.steps == corpus.steps):
                    return table
                table.close()
            except IntrospectError as exc:
                if corpus is None:
                    raise IntrospectError(f"{exc}; cannot rebuild it: {problem}") from None
                warnings.warn(f"{exc}; rebuilding it", stacklevel=2)
        if corpus is None:
            raise IntrospectError(f"{path}: no pattern database and nothing to build it from: {problem}")
        table_stats = build_table(path, corpus, show_progress=show_progress)
        table = cls(path, **kw)
        table.build_stats = table_stats
        return table

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ distributions
    def _fetch(self, kind: str, a: int, b: int, sources: list[int]) -> tuple[np.ndarray, np.ndarray]:
        key = (kind, a, b, tuple(sources))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        marks = ",".join("?" * len(sources))
        if kind == "pair":
            sql = f"SELECT q, SUM(n) FROM pair WHERE src=? AND dst=? AND p IN ({marks}) GROUP BY q"
            args = (a, b, *sources)
        else:
            sql = f"SELECT q, SUM(n) FROM next WHERE drum=? AND p IN ({marks}) GROUP BY q"
            args = (a, *sources)
        try:
            with self._lock:
                rows = self._con.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise IntrospectError(f"{self.path}: query failed ({exc}); rebuild the database") from None
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
        out = (arr[:, 0], arr[:, 1].astype(np.float64))
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = out
        return out

    def levels(self, kind: str, a: int, b: int, pattern: int):
        """Yield ``(level, patterns, counts)`` from the most to the least specific back-off level."""
        seen, weight = self._marginal[a] if kind == "pair" else self._next_sources[a]
        if len(seen):
            dist = np.bitwise_count(seen ^ np.uint64(pattern))
            for k in np.unique(dist[dist <= self.max_hamming]):
                idx = np.nonzero(dist == k)[0]
                if len(idx) > self.max_neighbours:  # keep the best-attested neighbours
                    idx = idx[np.argsort(-weight[idx], kind="stable")[: self.max_neighbours]]
                qs, ns = self._fetch(kind, a, b, sorted(int(seen[i]) for i in idx))
                if len(qs):
                    yield (EXACT if k == 0 else f"hamming-{int(k)}"), qs, ns
        mq, mn = self._marginal[b]
        yield MARGINAL, mq.astype(np.int64), mn

    def _answer(self, kind, a, b, pattern, exclude, rng, greedy) -> Answer:
        pattern = check_pattern(pattern, self.steps)
        if exclude is not None:
            exclude = check_pattern(exclude, self.steps)
        for level, qs, ns in self.levels(kind, a, b, pattern):
            if exclude is not None:
                keep = qs != exclude
                qs, ns = qs[keep], ns[keep]
            if not len(qs):
                continue  # only the excluded answer here: a wider level varies it
            if greedy:
                # Ties go to the pattern more common overall, then the smaller hash (deterministic).
                mq, mn = self._marginal[b]
                pos = np.searchsorted(mq, qs.astype(np.uint64))
                pos = np.minimum(pos, max(len(mq) - 1, 0))
                prior = np.where((len(mq) > 0) & (mq[pos] == qs.astype(np.uint64)), mn[pos], 0.0)
                best = np.lexsort((qs, -prior, -ns))[0]
            else:
                gen = self.rng if rng is None else (rng if isinstance(rng, np.random.Generator)
                                                    else np.random.default_rng(rng))
                cum = np.cumsum(ns)
                best = int(np.searchsorted(cum, gen.random() * cum[-1], side="right"))
                best = min(best, len(qs) - 1)
            return Answer(int(qs[best]), level, float(ns[best] / ns.sum()), self.steps)
        # Only reachable when the marginal holds nothing but the excluded pattern.
        return Answer(int(exclude), MARGINAL, 1.0, self.steps)

    def ask(self, src, dst, pattern, exclude=None, rng=None, greedy: bool = False) -> Answer:
        """A pattern for drum ``dst`` given that drum ``src`` plays ``pattern``.

        Parameters
        ----------
        src, dst : drum names or indices (different drums)
        pattern : int hash or pattern string of ``self.steps`` steps
        exclude : a pattern not to return (the previous answer, so repeated asks vary)
        rng : ``numpy.random.Generator`` or int seed; default: the table's own generator
        greedy : return the most probable pattern instead of a weighted draw

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
        """A pattern for the bar after one where ``drum`` plays ``pattern`` (same arguments as :meth:`ask`)."""
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
    """(n_windows, 9) patterns of a :class:`~rolypoly.score.Score`: per bar (16) or per bar pair (32)."""
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
    from rolypoly.score import Note, score_from_notes
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
    score : :class:`~rolypoly.score.Score`
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
