"""Duets with the virtual musician: takes, asynchrony, and train-after-take adaptation.

Used by ``rolypoly demo`` and ``rolypoly bench duet``.  The musician strums on the
score's eighth-note rows with a feel (laid back, swing, rushing, on grid); the drum
machine plays the score offline while listening; *asynchrony* is the mean
``|drum hit - musician onset|`` over the hits of rows where both sound (true onset times).

Examples
--------
>>> audio, rows, onsets = virtual_take(score, "laid_back", seed=1)      # doctest: +SKIP
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from rolypoly.config import with_values
from rolypoly.errors import RolypolyError


def musician_rows(score, per_bar: int = 8) -> np.ndarray:
    """Rows on the ``per_bar`` grid (eighths by default): where the musician plays."""
    pos = score.phase * per_bar
    return np.nonzero(np.abs(pos - np.round(pos)) < 1e-6)[0]


def virtual_take(score, feel, seed: int = 0, sr: int = 48000, style: str = "pluck", level_db: float = -12.0,
                 **kwargs):
    """The musician's audio for ``score`` and the true onset of each row it plays.

    Returns ``(audio, rows, true_onsets_s)``.
    """
    from rolypoly.sim.musician import play
    rows = musician_rows(score)
    if len(rows) == 0:
        raise RolypolyError(f"{score.path}: no eighth-note rows for the musician to play")
    audio, onsets = play(score.times_ms[rows] / 1000.0, score.phase[rows], score.bar_ms[rows] / 1000.0, feel,
                         sr=sr, seed=seed, style=style, level_db=level_db, **kwargs)
    return audio, rows, np.asarray(onsets)


def asynchrony_ms(hits: list[dict], sr: int, score, rows: np.ndarray, onsets_s: np.ndarray) -> float:
    """Mean |hit - onset| in ms over the drum hits of rows the musician also played."""
    onset_of_row = dict(zip(rows.tolist(), onsets_s.tolist()))
    # hits -> rows by nearest nominal row time (hits lie within +-0.04 bar of their row)
    times = np.array([h["sample"] for h in hits], dtype=np.float64) / sr * 1000.0
    if len(times) == 0:
        return float("nan")
    idx = np.clip(np.searchsorted(score.times_ms, times), 1, len(score.times_ms) - 1)
    left, right = score.times_ms[idx - 1], score.times_ms[idx]
    row = np.where(np.abs(times - left) <= np.abs(times - right), idx - 1, idx)
    errs = [abs(t - 1000.0 * onset_of_row[r]) for t, r in zip(times, row.tolist()) if r in onset_of_row]
    return float(np.mean(errs)) if errs else float("nan")


def listener_bias_ms(heard: list[dict], rows: np.ndarray, onsets_s: np.ndarray) -> float:
    """Mean signed error of the listener, ``heard - true`` in ms, over the notes it matched to their rows.

    ``heard`` is a take's ``onsets.json`` (``row``, ``time_s`` per onset).  The drums lean
    towards what is heard, so a listener that hears every note ``b`` ms early pulls them
    ``b`` ms early of the true onsets: asynchrony cannot fall below ``E|jitter + b|``.

    Examples
    --------
    >>> round(listener_bias_ms([{"row": 2, "time_s": 1.002}, {"row": 5, "time_s": 2.0}], np.array([2, 3]),
    ...                        np.array([1.0, 1.5])), 6)     # row 5 is not the musician's: left out
    2.0
    """
    true_of_row = dict(zip(np.asarray(rows).tolist(), np.asarray(onsets_s, dtype=np.float64).tolist()))
    errs = [1000.0 * (float(h["time_s"]) - true_of_row[int(h["row"])]) for h in heard if int(h["row"]) in true_of_row]
    return float(np.mean(errs)) if errs else float("nan")


def quantised_asynchrony_ms(score, rows: np.ndarray, onsets_s: np.ndarray) -> float:
    """Asynchrony of a quantised drum machine: every drum exactly at its score time."""
    per_row = (score.vel[rows] > 0).sum(1)
    err = np.abs(score.times_ms[rows] - 1000.0 * onsets_s)
    return float(np.sum(err * per_row) / max(1, per_row.sum()))


def play_take(cfg, score_path, audio, model: str | None, work_dir: Path):
    """One offline take with ``model`` (None = quantised machine); returns the OfflineResult."""
    from rolypoly.live.drivers import perform_offline
    from rolypoly.live.engine import Rolypoly
    # work_dir None: the take goes where every command keeps takes (takes_dir)
    over = {} if work_dir is None else {"takes_dir": str(work_dir / "takes"), "models_dir": str(work_dir / "models")}
    over.update({"engine.model_path": model} if model else {"engine.enable": False})
    eng = Rolypoly(with_values(cfg, **over), offline=True)
    if not eng.message("read", str(score_path)):
        raise RolypolyError(eng.last_errors()[-1])
    res = perform_offline(eng, audio)
    errs = [e for e in eng.last_errors() if not e.startswith("outlet")]
    if model and errs:
        raise RolypolyError(errs[-1])
    return res


def adaptation(cfg, score_path, feel, n_takes: int = 4, seed: int = 0, work_dir: Path | None = None,
               weights: dict | None = None, on_take=None) -> list[dict]:
    """Play ``n_takes`` takes with one feel, finetuning after each; references in the same run.

    Returns one dict per take: quantised, pretrained and adapting asynchrony (ms), the model
    version used, the listener's mean error on the adapting take (:func:`listener_bias_ms`),
    finetune seconds.
    """
    from rolypoly.learn.finetune import train_after_take
    from rolypoly.live.takes import load_take
    from rolypoly.score.midi import read_score
    score = read_score(score_path)
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="rolypoly-duet-"))
    pretrained = str(cfg.engine.model_path)
    current = pretrained
    out = []
    for t in range(1, n_takes + 1):
        audio, rows, onsets = virtual_take(score, feel, seed=seed * 100 + t, sr=int(cfg.audio.sample_rate))
        q = quantised_asynchrony_ms(score, rows, onsets)
        ref = play_take(cfg, score_path, audio, pretrained, work_dir / "pretrained")
        p = asynchrony_ms(ref.hits, int(cfg.audio.sample_rate), score, rows, onsets)
        if current == pretrained:
            res, a = ref, p  # the first take: the adapting machine is still the pretrained one
        else:
            res = play_take(cfg, score_path, audio, current, work_dir / "adapting")
            a = asynchrony_ms(res.hits, int(cfg.audio.sample_rate), score, rows, onsets)
        heard = load_take(res.take_dir).onsets if res.take_dir else []
        row = {"take": t, "quantised_ms": q, "pretrained_ms": p, "adapting_ms": a, "model": Path(current).parent.name
               if current != pretrained else "pretrained", "late_rows": res.late_rows, "onsets": res.onsets,
               "listener_ms": listener_bias_ms(heard, rows, onsets), "finetune_s": None}
        if t < n_takes:
            version = train_after_take(with_values(cfg, models_dir=str(work_dir / "models")), res.take_dir,
                                       base_model=current, weights=weights)
            current = str(version.torchscript)
            row["finetune_s"] = version.seconds
        out.append(row)
        if on_take is not None:
            on_take(row)
    return out
