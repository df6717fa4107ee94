"""Groove MIDI Dataset preparation: quantised rows with offsets, splits, a cache.

Each take becomes rows on a grid: every onset snaps to the nearer of the 16th grid
(16 steps a bar) and the triplet grid (24 steps a bar); its offset is onset minus grid
position in bar fractions; hits sharing a grid position form a row (two hits of one
drum: the louder is kept).  The encoder's velocities are the per-take, per-drum mean
of the non-zero velocities, the score a drummer would read.  With ``grid="16"`` onsets
snap to the 16th grid only (the evaluation protocol in rolypoly.metrics).

The prepared arrays are cached under ``cache_dir`` keyed by a hash of the data files,
the settings and :data:`PIPELINE_VERSION`, so re-running is instant and any change to
the data or this code rebuilds the cache.

Examples
--------
>>> data = load_gmd("../shared/data/groove", "cache")          # doctest: +SKIP
>>> test = data.split("test")                                   # doctest: +SKIP
>>> len(test), test.rows(0)["vel"].shape                        # doctest: +SKIP
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import DataError, ScoreError
from rolypoly.io import atomic_path
from rolypoly.score.drums import N_DRUMS
from rolypoly.score.midi import bar_ms, read_midi_notes

#: Bump when the preparation changes what it produces (invalidates caches).
PIPELINE_VERSION = 3
GRIDS = {"16+24": (16, 24), "16": (16,)}
SPLITS = ("train", "validation", "test")
INFO_COLUMNS = ("drummer", "session", "id", "style", "bpm", "beat_type", "time_signature",
                "midi_filename", "audio_filename", "duration", "split")
ROW_KEYS = ("score_vel", "vel", "off", "bpm", "tsig", "phase", "bar", "bar_ms")
META_KEYS = ("split", "drummer", "style", "midi_filename", "duration", "time_signature", "beat_type")


def resolve_root(cfg_data) -> Path:
    """The GMD root to use: ``data.root``, or ``data.fallback_root`` when the first is absent."""
    root = Path(os.path.expanduser(str(cfg_data.root)))
    if (root / "info.csv").is_file():
        return root
    fallback = getattr(cfg_data, "fallback_root", None)
    if fallback and (Path(os.path.expanduser(str(fallback))) / "info.csv").is_file() and not root.exists():
        return Path(os.path.expanduser(str(fallback)))
    raise DataError(
        f"{root}: no info.csv here. Download groove-v1.0.0-midionly.zip (Magenta's Groove MIDI Dataset), "
        f"unzip it and run: rolypoly data prepare data.root=PATH/TO/groove")


def read_info(root: Path) -> list[dict]:
    """The rows of ``info.csv`` with the columns checked."""
    info = Path(root) / "info.csv"
    if not info.is_file():
        raise DataError(f"{root}: no info.csv (is this the groove folder of the Groove MIDI Dataset?)")
    with open(info, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("midi_filename", "split", "duration") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{info}: missing columns {missing}")
        rows = list(reader)
    for i, row in enumerate(rows, start=2):
        if row["split"] not in SPLITS:
            raise DataError(f"{info} line {i}: unknown split {row['split']!r}")
        try:
            row["duration"] = float(row["duration"])
        except ValueError:
            raise DataError(f"{info} line {i}: duration {row['duration']!r} is not a number") from None
    return rows


def _cache_key(root: Path, info: list[dict], grid: str, min_duration_s: float) -> str:
    h = hashlib.sha1()
    h.update(f"v{PIPELINE_VERSION}|{grid}|{min_duration_s}".encode())
    h.update((root / "info.csv").read_bytes())
    for row in info:
        path = root / row["midi_filename"]
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"missing:" + row["midi_filename"].encode())
    return h.hexdigest()[:16]


def quantise_take(path: Path, grid: str = "16+24") -> dict[str, np.ndarray] | None:
    """Rows of one take (see module docs), or None when it has no mapped drum notes."""
    steps = GRIDS[grid]
    notes, tmap, _ = read_midi_notes(path)
    if not notes:
        return None
    lcm = int(np.lcm.reduce(steps))
    keys: dict[int, int] = {}
    rows_vel: list[np.ndarray] = []
    rows_off: list[np.ndarray] = []
    rows_meta: list[tuple[float, float, float, int]] = []
    for n in notes:
        bar, phase = tmap.bar_position(n.tick)
        best = None
        for s in steps:  # nearer of the grids; ties prefer the 16th grid (listed first)
            k = int(np.floor(phase * s + 0.5))
            dist = abs(phase - k / s)
            if best is None or dist < best[0] - 1e-12:
                best = (dist, k * (lcm // s), phase - k / s)
        _, step, offset = best
        b = bar
        if step >= lcm:  # snapped onto the next bar line
            b, step = bar + 1, step - lcm
        key = b * lcm + step
        if key not in keys:
            keys[key] = len(rows_vel)
            rows_vel.append(np.zeros(N_DRUMS))
            rows_off.append(np.zeros(N_DRUMS))
            num, den = tmap.meter_at(n.tick)
            rows_meta.append((tmap.bpm_at(n.tick), num / den, step / lcm, b))
        r = keys[key]
        if n.velocity > rows_vel[r][n.drum]:
            rows_vel[r][n.drum] = n.velocity
            rows_off[r][n.drum] = offset
    order = np.argsort(np.fromiter(keys.keys(), dtype=np.int64))
    idx = np.fromiter(keys.values(), dtype=np.int64)[order]
    vel = np.stack(rows_vel)[idx].astype(np.float32)
    off = np.stack(rows_off)[idx].astype(np.float32)
    meta = np.array(rows_meta, dtype=np.float64)[idx]
    bpm, tsig = meta[:, 0], meta[:, 1]
    hit = vel > 0
    counts = hit.sum(0)
    mean_vel = np.where(counts > 0, (vel * hit).sum(0) / np.maximum(counts, 1), 0.0)
    score_vel = np.where(hit, mean_vel[None, :], 0.0).astype(np.float32)
    return {"score_vel": score_vel, "vel": vel, "off": off, "bpm": bpm.astype(np.float32),
            "tsig": tsig.astype(np.float32), "phase": meta[:, 2].astype(np.float32),
            "bar": meta[:, 3].astype(np.int32), "bar_ms": bar_ms(bpm, tsig).astype(np.float32)}


@dataclass
class Takes:
    """A set of prepared takes: concatenated row arrays and per-take metadata."""

    arrays: dict[str, np.ndarray]
    starts: np.ndarray            # (n_takes + 1,) row index where each take starts
    meta: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def n_rows(self) -> int:
        return int(self.starts[-1])

    def rows(self, i: int) -> dict[str, np.ndarray]:
        """The row arrays of take ``i``."""
        a, b = int(self.starts[i]), int(self.starts[i + 1])
        return {k: v[a:b] for k, v in self.arrays.items()}

    def select(self, mask: np.ndarray) -> "Takes":
        """The takes where ``mask`` is true."""
        idx = np.nonzero(mask)[0]
        parts = {k: [] for k in self.arrays}
        starts = [0]
        for i in idx:
            for k, v in self.rows(int(i)).items():
                parts[k].append(v)
            starts.append(starts[-1] + int(self.starts[i + 1] - self.starts[i]))
        arrays = {k: (np.concatenate(v) if v else self.arrays[k][:0]) for k, v in parts.items()}
        return Takes(arrays, np.array(starts, dtype=np.int64), {k: v[idx] for k, v in self.meta.items()})

    def split(self, name: str) -> "Takes":
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {SPLITS}")
        return self.select(self.meta["split"] == name)

    def offset_stats(self) -> tuple[float, float]:
        """Mean and standard deviation of drum offsets over all hits (bar fractions)."""
        hit = self.arrays["vel"] > 0
        off = self.arrays["off"][hit].astype(np.float64)
        return float(off.mean()), float(off.std())


def prepare(root: str | os.PathLike, cache_dir: str | os.PathLike, grid: str = "16+24",
            min_duration_s: float = 5.0, show_progress: bool = True) -> tuple[Takes, Path, bool]:
    """Prepare (or load from cache) every take of the dataset.

    Returns ``(takes, cache_file, built)`` where ``built`` tells whether the cache was rebuilt.

    Raises
    ------
    DataError
        No ``info.csv``, or no usable take.
    """
    if grid not in GRIDS:
        raise DataError(f"unknown grid {grid!r}; choose one of {list(GRIDS)}")
    root = Path(root)
    info = read_info(root)
    key = _cache_key(root, info, grid, min_duration_s)
    cache_dir = Path(cache_dir)
    cache_file = cache_dir / f"gmd_{grid.replace('+', '_')}_{key}.npz"
    if cache_file.is_file():
        try:
            return _load_cache(cache_file), cache_file, False
        except Exception:  # a damaged cache is rebuilt, not trusted
            cache_file.unlink(missing_ok=True)
    from rolypoly.report import progress
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ROW_KEYS}
    meta: dict[str, list] = {k: [] for k in META_KEYS}
    starts = [0]
    problems = []
    for row in progress(info, total=len(info), desc=f"preparing GMD ({grid})", disable=not show_progress or None):
        if row["duration"] < min_duration_s:
            continue
        path = root / row["midi_filename"]
        try:
            take = quantise_take(path, grid)
        except ScoreError as exc:
            problems.append(str(exc))
            continue
        if take is None:
            continue
        for k in ROW_KEYS:
            parts[k].append(take[k])
        for k in META_KEYS:
            meta[k].append(row.get(k, ""))
        starts.append(starts[-1] + len(take["vel"]))
    if len(starts) == 1:
        raise DataError(f"{root}: no usable takes ({len(problems)} unreadable files; first: "
                        f"{problems[0] if problems else 'none'})")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    metas = {k: np.array(v) for k, v in meta.items()}
    metas["duration"] = metas["duration"].astype(np.float64)
    takes = Takes(arrays, np.array(starts, dtype=np.int64), metas)
    cache_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"gmd_{grid.replace('+', '_')}_"
    for old in cache_dir.glob(prefix + "*.npz"):
        if len(old.stem) == len(prefix) + 16:  # same grid, older key ("gmd_16_" must not match "gmd_16_24_")
            old.unlink(missing_ok=True)
    with atomic_path(cache_file, suffix=".npz") as tmp:
        np.savez(tmp, starts=takes.starts, **{f"row_{k}": v for k, v in arrays.items()},
                 **{f"meta_{k}": v for k, v in metas.items()})
    return takes, cache_file, True


def _load_cache(path: Path) -> Takes:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[f"row_{k}"] for k in ROW_KEYS}
        meta = {k: z[f"meta_{k}"] for k in META_KEYS}
        return Takes(arrays, z["starts"], meta)


def load_gmd(cfg, grid: str = "16+24", show_progress: bool = True) -> Takes:
    """Prepared takes for a composed config (``cfg.data``, ``cfg.cache_dir``)."""
    root = resolve_root(cfg.data)
    takes, _, _ = prepare(root, cfg.cache_dir, grid, float(cfg.data.min_duration_s), show_progress)
    return takes
