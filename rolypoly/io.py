"""Files: the one audio reader (and resampler), the one WAV writer, and atomic writes.

Every file rolypoly writes goes through :func:`atomic_path` (one file) or
:func:`atomic_dir` (a folder such as a take or a model version): the content is
written under a temporary name in the same folder and renamed into place only when
complete, so a crash or an error never leaves half a file where a good one was.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from math import gcd
from pathlib import Path

import numpy as np

from rolypoly.errors import AudioError, OutputError


def check_output(path: str | os.PathLike, force: bool = False, suffixes: tuple[str, ...] | None = None,
                 what: str = "output") -> Path:
    """The path an output goes to, refused (``OutputError``) when writing there would surprise.

    Refused: an existing file unless ``force`` (nothing a user made, and no shipped file in
    ``data/`` or ``models/``, is replaced silently), an existing folder, a name without one
    of ``suffixes``.  ``~`` is expanded.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output(d / "x.wav", suffixes=(".wav",)).name
    'x.wav'
    >>> check_output(d / "noext", suffixes=(".wav",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rolypoly.errors.OutputError: output ...noext: the name must end in .wav
    """
    path = Path(os.path.expanduser(str(path)))
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"{what} {path}: the name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not force:
        raise OutputError(f"{what} {path} exists; pass --force to replace it, or choose another name")
    return path


def check_output_dir(path: str | os.PathLike, force: bool = False, what: str = "output folder") -> Path:
    """A folder outputs go to: refused when it holds files, unless ``force`` (then they are replaced)."""
    path = Path(os.path.expanduser(str(path)))
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputError(f"{what} {path} is not empty; pass --force to write over its files, or choose another")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        The final file.  Its folder is created when missing.
    suffix : str, optional
        The temporary file's extension, for writers that choose the format by
        extension (matplotlib, numpy).  Defaults to ``path``'s own suffix.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path)
    _make_parent(path)
    suffix = path.suffix if suffix is None else suffix
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield an empty temporary folder beside ``path``; rename it to ``path`` on success.

    ``path`` must not exist yet (a take or model version is never replaced).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "take-001"
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("a")
    >>> sorted(p.name for p in target.iterdir())
    ['a.txt']
    """
    path = Path(path)
    _make_parent(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resample(x: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Polyphase resampling of a mono signal (exact rational ratio, no drift).

    Examples
    --------
    >>> resample(np.zeros(441, np.float32), 44100, 48000).shape
    (480,)
    """
    if int(orig_sr) == int(sr):
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly
    g = gcd(int(sr), int(orig_sr))
    return resample_poly(np.asarray(x, dtype=np.float64), int(sr) // g, int(orig_sr) // g).astype(np.float32)


def read_audio(path: str | os.PathLike, sr: int, warn: bool = True) -> np.ndarray:
    """A mono float32 signal at ``sr``: any channel count is averaged, any rate resampled.

    Parameters
    ----------
    path : path-like
        A file soundfile reads (wav, flac, ogg, ...).
    sr : int
        The wanted sample rate.
    warn : bool
        Warn (``RuntimeWarning``) when the file had to be resampled.

    Raises
    ------
    AudioError
        Missing, unreadable or empty file.
    """
    import soundfile as sf
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own types for unreadable files
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    mono = np.nan_to_num(data.mean(axis=1), nan=0.0, posinf=0.0, neginf=0.0)
    if file_sr != sr:
        if warn:
            warnings.warn(f"{path}: sample rate {file_sr} Hz, resampled to {sr} Hz", RuntimeWarning, stacklevel=2)
        mono = resample(mono, file_sr, sr)
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str = "PCM_24") -> Path:
    """Write float audio (clipped to [-1, 1]) as WAV, atomically."""
    import soundfile as sf
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sr, subtype=subtype, format="WAV")
        except (RuntimeError, ValueError) as exc:  # soundfile's own errors (a bad rate, a full disk)
            raise OutputError(f"cannot write {path}: {exc}") from None
    return path


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file atomically (the copy appears complete or not at all)."""
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
