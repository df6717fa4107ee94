"""Groove plots (matplotlib, PNG): what the drums did against the score and the musician.

:func:`plot_takes` draws one row of panels per take, stacked on one time axis so a take
before finetuning and one after can be compared:

- *lanes*: the score grid (a thin line per score row, a thicker one per bar), the
  musician's onsets (top lane) and each drum's hits (one lane per drum), a hit's colour
  its offset from the grid in ms and its size its velocity;
- *offsets*: each drum's offsets in ms over time, with the musician's offsets from the
  grid (``tau``) in black, so "the drums follow the player" reads as the coloured points
  tracking the black ones.

:func:`plot_losses` draws a finetune's loss table (total and terms per epoch).

Examples
--------
>>> plot_takes(["outputs/takes/20261201-101500"], "groove.png")     # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rolypoly.io import atomic_path

OFFSET_RANGE_MS = 40.0   # the colour scale's ends: a hit this early or late is full blue or red


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def _take_data(take) -> dict:
    from rolypoly.live.takes import load_take
    t = load_take(take)
    sr = int(t.settings.get("sample_rate", 48000))
    rows = t.rows
    hits = [h for h in t.hits if isinstance(h, dict) and {"sample", "drum", "velocity", "offset_ms"} <= set(h)]
    return {
        "take": t, "name": Path(t.path).name, "model": str(t.settings.get("model_version") or "?"),
        "row_s": np.asarray(rows["time_ms"], float) / 1000.0,
        "bar_s": np.asarray(rows["time_ms"], float)[np.isclose(np.asarray(rows["phase"], float), 0.0)] / 1000.0,
        "hit_s": np.array([h["sample"] / sr for h in hits], float),
        "hit_drum": np.array([int(h["drum"]) for h in hits], int),
        "hit_vel": np.array([float(h["velocity"]) for h in hits], float),
        "hit_off": np.array([float(h["offset_ms"]) for h in hits], float),
        "onset_s": np.array([float(o.get("time_s", np.nan)) for o in t.onsets if isinstance(o, dict)], float),
        "onset_tau": np.array([float(o.get("tau_ms", np.nan)) for o in t.onsets if isinstance(o, dict)], float),
    }


def plot_takes(takes, out, labels=None, span_s: tuple[float, float] | None = None, title: str | None = None) -> Path:
    """Draw the groove plot of one or more takes into ``out`` (PNG, written atomically).

    Parameters
    ----------
    takes : list of take folders
    out : the PNG to write
    labels : one label per take (e.g. ``["before finetuning", "after finetuning"]``)
    span_s : (start, end) in seconds to show (default: the whole take)
    """
    from rolypoly.score.drums import DRUMS
    plt = _pyplot()
    data = [_take_data(t) for t in takes]
    labels = list(labels or [""] * len(data))
    fig, axes = plt.subplots(2 * len(data), 1, figsize=(14, 5.2 * len(data)), sharex=True, squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": [1.3, 1.0] * len(data)})
    axes = axes[:, 0]
    cmap = plt.get_cmap("coolwarm")
    colors = plt.get_cmap("tab10")
    lo_s, hi_s = span_s if span_s else (0.0, max(max((d["row_s"].max() if len(d["row_s"]) else 0.0,
                                                      d["hit_s"].max() if len(d["hit_s"]) else 0.0)) for d in data)
                                              + 0.5)
    scatter = None
    for i, d in enumerate(data):
        lanes, offs = axes[2 * i], axes[2 * i + 1]
        for x in d["row_s"]:
            lanes.axvline(x, color="0.88", lw=0.5, zorder=0)
        for x in d["bar_s"]:
            lanes.axvline(x, color="0.55", lw=1.0, zorder=0)
            offs.axvline(x, color="0.85", lw=0.8, zorder=0)
        lanes.scatter(d["onset_s"], np.zeros_like(d["onset_s"]), marker="|", s=220, color="black", label="musician")
        scatter = lanes.scatter(d["hit_s"], d["hit_drum"] + 1, c=np.clip(d["hit_off"], -OFFSET_RANGE_MS, OFFSET_RANGE_MS),
                                cmap=cmap, vmin=-OFFSET_RANGE_MS, vmax=OFFSET_RANGE_MS,
                                s=12 + 60 * d["hit_vel"] / 127.0, edgecolors="0.2", linewidths=0.3, zorder=3)
        lanes.set_yticks(range(len(DRUMS) + 1), ["musician", *DRUMS])
        lanes.set_ylim(len(DRUMS) + 0.7, -0.7)
        head = f"{labels[i] + ': ' if labels[i] else ''}take {d['name']} (model {d['model']})"
        lanes.set_title(head, loc="left", fontsize=10)
        offs.axhline(0.0, color="0.4", lw=0.8)
        for k in sorted(set(d["hit_drum"].tolist())):
            sel = d["hit_drum"] == k
            offs.plot(d["hit_s"][sel], d["hit_off"][sel], ".", ms=4, color=colors(k % 10), label=DRUMS[k])
        offs.plot(d["onset_s"], d["onset_tau"], "x", ms=5, color="black", label="musician (tau)")
        offs.set_ylabel("offset (ms)")
        offs.legend(loc="upper right", fontsize=7, ncol=5, framealpha=0.8)
    axes[-1].set_xlim(lo_s, hi_s)
    axes[-1].set_xlabel("time (s)")
    if scatter is not None:
        fig.colorbar(scatter, ax=list(axes), fraction=0.015, pad=0.01, label="hit offset from the grid (ms)")
    if title:
        fig.suptitle(title)
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def plot_losses(losses: list[dict], out, title: str = "finetuning loss") -> Path:
    """Draw a finetune's loss table (``ModelVersion.losses`` or ``losses.json``) into ``out`` (PNG)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [r["epoch"] for r in losses]
    for key, style in (("loss", "-k"), ("vel", "--"), ("off", "--"), ("g", "--"), ("r", ":")):
        if losses and key in losses[0]:
            ax.plot(epochs, [r[key] for r in losses], style, label=key, lw=2 if key == "loss" else 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (model units)")
    ax.set_title(title, loc="left")
    ax.legend()
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def losses_of(version_dir: str | os.PathLike) -> list[dict]:
    """The loss table of a model version folder."""
    return json.loads((Path(version_dir) / "losses.json").read_text())
