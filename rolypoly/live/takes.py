"""Take records: everything about one performance, saved atomically before any training.

A take lives in ``takes/<timestamp>/``::

    settings.json   attributes, listener settings, sample rate, model version, counts
    score.mid       the score that was played (a copy of the file)
    input.wav       the musician's input as heard (mono, float), streamed during the take
    drums.wav       the drums as they left the audio callback (stereo, float), streamed too
    onsets.json     every detected onset: time, matched row, tau
    rows.npz        per played row: score row, nominal time, prediction, realised
                    velocities and offsets, the lean they include, tau_g, onset flag,
                    late flag
    hits.json       every drum hit that sounded: sample, drum, velocity, offset
    performance.mid the drums as played

The folder is written under a hidden name, ``takes/.partial-<timestamp>-<pid>/``, while
the take plays, and renamed into place at stop, so a take is either complete or absent.
While it plays the hidden folder holds, besides the audio (headers brought up to date
every second), a journal written by the reader every second::

    settings.json           the take's settings as it started
    score.mid               the score
    journal/rows-NNNNNN.npz the rows settled since the previous one (each file whole or absent)
    journal/onsets.jsonl    one onset per line, appended
    journal/hits.jsonl      one hit per line, appended

so after a crash :func:`recover_take` makes a normal take of what was played so far
(``settings["recovered"]`` is true), and :func:`partial_takes` lists what is there.

Examples
--------
>>> take = load_take("takes/20261122-101500")        # doctest: +SKIP
>>> take.rows["tau_g"].shape                           # doctest: +SKIP
>>> [p.path for p in partial_takes("takes") if p.recoverable]          # doctest: +SKIP
>>> recover_take("takes/.partial-20261122-101500-4242", "takes")       # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import TakeError
from rolypoly.io import atomic_dir, atomic_path

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
                score_path: str | None, performance_midi=None, stamp: str | None = None) -> Path:
    """Complete a take streamed into ``folder`` (its audio already there) and rename it into ``root``.

    The rename is the commit: until it happens the folder is hidden, and a crash
    before it leaves the take so far recoverable (:func:`recover_take`).  Each file is
    written whole or not at all, ``rows.npz`` last: a hidden folder holding it is a
    finished take that only missed its rename.  The take is named ``stamp`` (default: now).
    """
    folder = Path(folder)
    _write_json(folder / "settings.json", settings, indent=1)
    _write_json(folder / "onsets.json", onsets)
    _write_json(folder / "hits.json", hits)
    if score_path and Path(score_path).is_file():
        with atomic_path(folder / "score.mid") as tmp:
            shutil.copyfile(score_path, tmp)
    if performance_midi is not None:
        with atomic_path(folder / "performance.mid") as tmp:
            performance_midi.save(str(tmp))
    with atomic_path(folder / "rows.npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in rows.items()})
    shutil.rmtree(folder / JOURNAL, ignore_errors=True)
    return _rename_into(folder, Path(root), stamp)


def _write_json(path: Path, obj, indent=None) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, default=_json_default))


def _rename_into(folder: Path, root: Path, stamp: str | None = None) -> Path:
    """Rename ``folder`` to a fresh ``root/<stamp>[-n]``; nothing there is ever replaced.

    The name is claimed by creating it (which fails if anything holds it), and only
    that empty folder of ours is then replaced by the rename.
    """
    root.mkdir(parents=True, exist_ok=True)
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    for n in range(10_000):
        final = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            final.mkdir()
        except FileExistsError:
            continue
        try:
            os.replace(folder, final)
        except OSError:
            final.rmdir()
            raise
        return final
    raise TakeError(f"{root}: no free take name for {stamp}")


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


# -- crashed takes -------------------------------------------------------------------------------------
JOURNAL = "journal"
PARTIAL_NAME = re.compile(r"^\.partial-(\d{8}-\d{6})-(\d+)$")


def partial_dir(root, stamp: str) -> Path:
    """The hidden folder a take streams into while it plays (:data:`PARTIAL_NAME` reads it back)."""
    return Path(root) / f".partial-{stamp}-{os.getpid()}"


@dataclass
class PartialTake:
    """A hidden ``.partial-<stamp>-<pid>`` folder: a take playing now, or one a crash cut short."""

    path: Path
    stamp: str
    pid: int
    alive: bool                 # its process still runs: it is being recorded, leave it alone
    input_frames: int           # audio frames readable in input.wav (the data on disk, header or not)
    drums_frames: int
    sample_rate: int | None
    rows: int                   # rows in the journal
    recoverable: bool
    why: str | None             # why it cannot be recovered (None when it can)

    @property
    def input_s(self) -> float | None:
        return self.input_frames / self.sample_rate if self.sample_rate else None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def _audio_file(folder: Path, name: str) -> Path | None:
    for ext in ("wav", "flac"):
        if (folder / f"{name}.{ext}").is_file():
            return folder / f"{name}.{ext}"
    return None


def _wav_frames(path: Path, repair: bool = False) -> tuple[int, int | None]:
    """(frames, sample rate) of a streamed WAV, counting the data written after its last header update.

    A take's WAV headers are brought up to date once a second, so after a crash the
    data chunk holds up to a second more than its header says.  With ``repair`` the
    header is rewritten to cover every whole frame on disk (the data chunk is the
    last one while streaming) and a trailing part frame is cut.
    """
    import struct
    size = path.stat().st_size
    with open(path, "r+b" if repair else "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise TakeError(f"{path}: not a RIFF/WAVE file")
        pos, block, sr = 12, None, None
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = struct.unpack("<4sI", f.read(8))
            if cid == b"fmt ":
                fmt = f.read(16)
                if len(fmt) < 16:
                    break
                sr, block = struct.unpack("<I", fmt[4:8])[0], struct.unpack("<H", fmt[12:14])[0]
            elif cid == b"data":
                if not block:
                    raise TakeError(f"{path}: data before its format chunk")
                start = pos + 8
                declared_end = start + csize
                if declared_end >= size:          # closed properly, or nothing written after the header
                    return min(csize, size - start) // block, sr
                frames = (size - start) // block
                if repair:
                    n = frames * block
                    f.seek(pos + 4)
                    f.write(struct.pack("<I", n))
                    f.seek(4)
                    f.write(struct.pack("<I", start + n - 8))
                    f.truncate(start + n)
                return frames, sr
            pos += 8 + csize + (csize & 1)
    raise TakeError(f"{path}: no data chunk (the take ended before any audio)")


def _audio_frames(path: Path | None, repair: bool = False) -> tuple[int, int | None]:
    if path is None:
        return 0, None
    try:
        if path.suffix == ".wav":
            return _wav_frames(path, repair)
        import soundfile as sf
        info = sf.info(str(path))
        return int(info.frames), int(info.samplerate)
    except TakeError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        raise TakeError(f"{path}: unreadable audio ({type(exc).__name__}: {exc})") from None


def _chunk_files(folder: Path) -> list[Path]:
    j = folder / JOURNAL
    if not j.is_dir():
        return []
    return sorted(p for p in j.iterdir() if re.fullmatch(r"rows-\d{6}\.npz", p.name))


def _read_chunk(path: Path, keys=None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (default all) of a row file; :class:`TakeError` naming it when damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in (keys or z.files)}
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise TakeError(f"{path}: unreadable row chunk ({type(exc).__name__}: {exc})") from None


def partial_takes(root: str | os.PathLike) -> list[PartialTake]:
    """The hidden ``.partial-*`` folders under ``root``, oldest first, each described (nothing is changed)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        m = PARTIAL_NAME.match(p.name)
        if not m or not p.is_dir():
            continue
        pid = int(m.group(2))
        alive = _pid_alive(pid)
        why = None
        try:
            fi, sr = _audio_frames(_audio_file(p, "input"))
            fd, _ = _audio_frames(_audio_file(p, "drums"))
        except TakeError as exc:
            fi, fd, sr, why = 0, 0, None, str(exc)
        n_rows = 0
        for c in _chunk_files(p):
            try:
                n_rows += len(_read_chunk(c, ("k",))["k"])
            except TakeError as exc:
                why = why or str(exc)
        if (p / "rows.npz").is_file():
            with contextlib.suppress(TakeError):
                n_rows = len(_read_chunk(p / "rows.npz", ("k",))["k"])
        if alive:
            why = f"process {pid} is still running (recording it now)"
        elif why is None:
            why = _unrecoverable(p, n_rows)
        if sr is None:
            with contextlib.suppress(Exception):
                sr = int(json.loads((p / "settings.json").read_text()).get("sample_rate"))
        out.append(PartialTake(p, m.group(1), pid, alive, fi, fd, sr, n_rows, why is None, why))
    return out


def _unrecoverable(folder: Path, n_rows: int) -> str | None:
    if not (folder / "settings.json").is_file():
        return (f"{folder}: no journal (written by an older rolypoly, or stopped before the take's first "
                "block); its audio, if any, is in input.wav and drums.wav")
    if not (folder / "score.mid").is_file():
        return f"{folder}: no score.mid in the journal (the score file was gone when the take started)"
    if n_rows == 0:
        return f"{folder}: no rows were settled before the crash (nothing to learn from); its audio is in input.wav"
    return None


def _read_jsonl(path: Path) -> list[dict]:
    """JSON lines, a truncated last line (the crash cut it) dropped; a bad line before it is an error."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError as exc:
        raise TakeError(f"{path}: unreadable ({exc.strerror or exc})") from None
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            if i == len(lines) - 1:   # no newline after it: written in part when the process died
                break
            raise TakeError(f"{path}:{i + 1}: not a JSON line ({exc})") from None
    return out


def recover_take(folder: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Make a normal take of a crashed take's hidden folder, and rename it into ``root``.

    The journal's row chunks are joined in order, the onsets and hits read (a last
    line cut short by the crash is dropped), the audio headers made to cover every
    frame on disk, and ``settings.json`` marked ``"recovered": true`` with the lengths
    found (``rows_played``, ``onsets``, ``hits``, ``input_frames``, ``drums_frames``,
    ``samples``).  The take is named by the time it started (``root/<stamp>``, or
    ``<stamp>-n`` when that name is taken: nothing is ever replaced).  A folder whose
    process still runs is refused, as is anything unreadable (the folder is then left
    as it was).

    Returns
    -------
    Path
        The take's folder, which :func:`load_take` reads.

    Raises
    ------
    TakeError
        Not a ``.partial-<stamp>-<pid>`` folder, its process alive, or its journal
        missing or damaged (the message names the folder or file).
    """
    folder = Path(folder)
    m = PARTIAL_NAME.match(folder.name)
    if not m or not folder.is_dir():
        raise TakeError(f"{folder}: not a partial take folder (.partial-<stamp>-<pid> under takes_dir)")
    pid = int(m.group(2))
    if _pid_alive(pid):
        raise TakeError(f"{folder}: process {pid} is still running and may be recording it; "
                        "stop that take first (its folder is left alone)")
    if (folder / "rows.npz").is_file():   # finished, only the rename was missed
        load_take(folder)
        shutil.rmtree(folder / JOURNAL, ignore_errors=True)
        return _rename_into(folder, Path(root), m.group(1))
    chunks = _chunk_files(folder)
    why = _unrecoverable(folder, len(chunks))
    if why:
        raise TakeError(why)
    try:
        settings = json.loads((folder / "settings.json").read_text())
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise TakeError(f"{folder}/settings.json: unreadable ({exc})") from None
    parts = []
    for c in chunks:
        parts.append(_read_chunk(c))
        absent = [f for f in ROW_FIELDS if f not in parts[-1]]
        if absent:
            raise TakeError(f"{c}: missing fields {absent}")
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if all(k in p for p in parts)}
    k = rows["k"]
    if len(k) and (k[0] != 0 or np.any(np.diff(k) != 1)):
        gap = 0 if k[0] != 0 else int(np.nonzero(np.diff(k) != 1)[0][0]) + 1
        raise TakeError(f"{folder}/{JOURNAL}: rows are not consecutive (row {int(k[gap])} follows "
                        f"{int(k[gap - 1]) if gap else 'nothing'}; a chunk file is missing)")
    onsets = _read_jsonl(folder / JOURNAL / "onsets.jsonl")
    hits = _read_jsonl(folder / JOURNAL / "hits.jsonl")
    fi, _ = _audio_frames(_audio_file(folder, "input"), repair=True)
    fd, _ = _audio_frames(_audio_file(folder, "drums"), repair=True)
    settings.update({"recovered": True, "rows_played": len(k), "late_rows": int(np.sum(rows["late"])),
                     "onsets": len(onsets), "hits": len(hits), "input_frames": int(fi), "drums_frames": int(fd),
                     "samples": max(0, int(fi) - int(settings.get("countin_samples", 0) or 0)),
                     "recovered_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return finish_take(folder, root, settings, rows, onsets, hits, None, stamp=m.group(1))


def late_rows(take_dir) -> list[tuple[int, float]]:
    """(row number, nominal time in ms) of each row that played late in a saved take."""
    if take_dir is None:
        return []
    rows = load_take(take_dir).rows
    late = np.nonzero(np.asarray(rows["late"]).astype(bool))[0]
    return [(int(rows["k"][i]), float(rows["time_ms"][i])) for i in late]
