"""Take records: everything about one performance, saved atomically before any training.

A take lives in ``takes/<timestamp>/``::

    settings.json   attributes, listener settings, sample rate, model version, counts
    score.mid       the score that was played (a copy of the file)
    input.wav       the musician's input as heard (mono, float), streamed during the take
    drums.wav       the drums as they left the audio callback (stereo, float), streamed too
    onsets.json     every detected onset: time, matched row, tau
    rows.npz        per played row: score row, nominal time, prediction, realised
                    velocities and offsets, tau_g, onset flag, late flag
    hits.json       every drum hit that sounded: sample, drum, velocity, offset
    performance.mid the drums as played

The folder is written under a hidden name (the audio while the take plays) and renamed
into place at stop, so a take is either complete or absent; after a crash the hidden
``.partial-*`` folder still holds the audio written so far.

Examples
--------
>>> take = load_take("takes/20261122-101500")        # doctest: +SKIP
>>> take.rows["tau_g"].shape                           # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import TakeError
from rolypoly.io import atomic_dir

REQUIRED = ("settings.json", "rows.npz", "score.mid")
ROW_FIELDS = ("k", "score_row", "time_ms", "pred", "real_vel", "real_off", "tau_g", "has_onset", "late",
              "score_vel", "bpm", "tsig", "phase", "bar_ms")


@dataclass
class Take:
    """A take read back from disk."""

    path: Path
    settings: dict
    rows: dict[str, np.ndarray]
    onsets: list[dict]
    hits: list[dict]

    @property
    def n_rows(self) -> int:
        return len(self.rows["k"])

    @property
    def n_onsets(self) -> int:
        return int(np.sum(self.rows["has_onset"]))


def new_take_dir(root: str | os.PathLike) -> Path:
    """A fresh, unique ``root/<timestamp>`` name (not yet created)."""
    root = Path(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / stamp
    n = 1
    while path.exists():
        path = root / f"{stamp}-{n}"
        n += 1
    return path


def save_take(root: str | os.PathLike, settings: dict, rows: dict, onsets: list, hits: list,
              input_audio: np.ndarray | None, sr: int, score_path: str | None,
              performance_midi=None, path: Path | None = None) -> Path:
    """Write a take folder atomically and return its path."""
    import soundfile as sf
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = path or new_take_dir(root)
    with atomic_dir(final) as tmp:
        (tmp / "settings.json").write_text(json.dumps(settings, indent=1, default=_json_default))
        np.savez(tmp / "rows.npz", **{k: np.asarray(v) for k, v in rows.items()})
        (tmp / "onsets.json").write_text(json.dumps(onsets, default=_json_default))
        (tmp / "hits.json").write_text(json.dumps(hits, default=_json_default))
        if input_audio is not None:
            sf.write(str(tmp / "input.wav"), np.asarray(input_audio, dtype=np.float32), sr, subtype="FLOAT")
        if score_path and Path(score_path).is_file():
            shutil.copyfile(score_path, tmp / "score.mid")
        if performance_midi is not None:
            performance_midi.save(str(tmp / "performance.mid"))
    return final


def finish_take(folder: Path, root: str | os.PathLike, settings: dict, rows: dict, onsets: list, hits: list,
                score_path: str | None, performance_midi=None) -> Path:
    """Complete a take streamed into ``folder`` (its audio already there) and rename it into ``root``.

    The rename is the commit: until it happens the folder is hidden, and a crash
    before it leaves the audio written so far readable in ``folder``.
    """
    root = Path(root)
    final = new_take_dir(root)
    folder = Path(folder)
    (folder / "settings.json").write_text(json.dumps(settings, indent=1, default=_json_default))
    np.savez(folder / "rows.npz", **{k: np.asarray(v) for k, v in rows.items()})
    (folder / "onsets.json").write_text(json.dumps(onsets, default=_json_default))
    (folder / "hits.json").write_text(json.dumps(hits, default=_json_default))
    if score_path and Path(score_path).is_file():
        shutil.copyfile(score_path, folder / "score.mid")
    if performance_midi is not None:
        performance_midi.save(str(folder / "performance.mid"))
    os.replace(folder, final)
    return final


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def load_take(path: str | os.PathLike) -> Take:
    """Read a take folder back.

    Raises
    ------
    TakeError
        The folder is missing or incomplete (names the missing file).
    """
    path = Path(path)
    if not path.is_dir():
        raise TakeError(f"{path}: no such take folder")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise TakeError(f"{path}: incomplete take (missing {', '.join(missing)})")
    try:
        settings = json.loads((path / "settings.json").read_text())
        with np.load(path / "rows.npz", allow_pickle=False) as z:
            rows = {k: z[k] for k in z.files}
        onsets = json.loads((path / "onsets.json").read_text()) if (path / "onsets.json").is_file() else []
        hits = json.loads((path / "hits.json").read_text()) if (path / "hits.json").is_file() else []
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a damaged file of any kind
        raise TakeError(f"{path}: unreadable take ({type(exc).__name__}: {exc})") from None
    absent = [f for f in ROW_FIELDS if f not in rows]
    if absent:
        raise TakeError(f"{path}/rows.npz: missing fields {absent}")
    return Take(path, settings, rows, onsets, hits)


def list_takes(root: str | os.PathLike) -> list[Path]:
    """Complete take folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "settings.json").is_file())


def late_rows(take_dir) -> list[tuple[int, float]]:
    """(row number, nominal time in ms) of each row that played late in a saved take."""
    if take_dir is None:
        return []
    rows = load_take(take_dir).rows
    late = np.nonzero(np.asarray(rows["late"]).astype(bool))[0]
    return [(int(rows["k"][i]), float(rows["time_ms"][i])) for i in late]
