"""Train-after-take: finetune the model on one duet and save a new model version.

The take loss, over the take's rows::

    L = (w_r*r + w_v*MSE(v_hat, v) + w_o*MSE(o_hat, g) + w_g*MSE(g_hat, g)) / (w_r + w_v + w_o + w_g)

* ``v``: the score's velocities (drums in the score), ``v_hat`` the predicted ones;
* ``g``: the musician's onset offset on rows with a matched onset; ``o_hat`` the predicted
  drum offsets on rows with both a drum hit and an onset (the drums should meet the
  musician); ``g_hat`` the predicted musician offset on rows with an onset;
* ``r = (mean(o_hat) - mu)^2 + (std(o_hat) - sigma)^2`` over the same ``o_hat`` (drum hits on rows
  with an onset) keeps the drums' timing statistics near human drumming (``mu``, ``sigma``: GMD
  train, stored with the model).  Only there: on rows the musician leaves alone no other term
  holds the offsets, and a spread asked of them would be bought by flinging them to the clip
  (a ghost note 100 ms late, heard with the musician's next note).

All terms are in model units (:mod:`rolypoly.score.features`).  A window model's rows are
trained in causal chunks of its window (a new chunk phase each epoch), so every row costs
one model pass per epoch; an incremental model reads the whole take in one pass, as it
plays it.  From the paper: 20 epochs, Adam, learning rate 0.003, here reached over
``finetune.warmup_steps`` (Adam's first step moves every weight by about the learning rate at
once).  The offsets are judged as the exported model plays them (times its offset scale).

Each finetune writes a new *model version* folder (weights, TorchScript, the take it came
from, the loss table) atomically; the pretrained model is never touched, and a step that
makes the loss non-finite is rejected (its update undone).

Examples
--------
>>> version = train_after_take(cfg, "takes/20261122-101500")    # doctest: +SKIP
>>> engine.message("load", str(version.torchscript))             # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import ModelError, RolypolyError, TakeError
from rolypoly.io import atomic_dir
from rolypoly.score import features as feat

WEIGHT_NAMES = ("w_v", "w_o", "w_g", "w_r")


def parse_weights(values, cfg_finetune=None) -> dict[str, float]:
    """Loss weights from ``train w_v w_o w_g [w_r]`` arguments (defaults from config).

    Raises
    ------
    RolypolyError
        Non-numeric, negative or non-finite weights, a wrong count, or all zero.
    """
    if cfg_finetune is None:  # the defaults live in the config schema only
        from rolypoly.config import Finetune
        cfg_finetune = Finetune()
    defaults = {k: float(getattr(cfg_finetune, k)) for k in WEIGHT_NAMES}
    values = list(values or [])
    if len(values) not in (0, 3, 4):
        raise RolypolyError(f"train takes 3 or 4 weights (w_v w_o w_g [w_r]), got {len(values)}")
    out = dict(defaults)
    for name, v in zip(WEIGHT_NAMES, values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise RolypolyError(f"weight {name} must be a number, got {v!r}") from None
        if not math.isfinite(f) or f < 0:
            raise RolypolyError(f"weight {name} must be finite and >= 0, got {v!r}")
        out[name] = f
    if sum(out.values()) <= 0:
        raise RolypolyError("at least one loss weight must be positive")
    return out


def take_arrays(take) -> dict[str, np.ndarray]:
    """Model inputs and targets of a take: rows as played, the musician's offsets, masks."""
    r = take.rows
    n = len(r["k"])
    if n == 0:
        raise TakeError(f"{take.path}: the take has no rows")
    tau = np.where(r["has_onset"], r["tau_g"], 0.0)
    x = feat.encode_rows(r["score_vel"], r["real_off"], r["bpm"], r["tsig"], r["phase"], tau)
    return {"x": x, "v": (r["score_vel"] / feat.VEL_SCALE).astype(np.float32),
            "g": feat.scale_off(tau).astype(np.float32), "onset": r["has_onset"].astype(bool),
            "hit": (r["score_vel"] > 0)}


def windows(x: np.ndarray, window: int = feat.DEFAULT_WINDOW) -> np.ndarray:
    """Rows ``window-1 .. N-1`` as the last row of their full window: ``(N-window+1, window, 22)``.

    This is exactly how each row is predicted live (used to check a model on a take).
    """
    n = x.shape[0]
    if n < window:
        return np.zeros((0, window, x.shape[1]), x.dtype)
    idx = np.arange(n - window + 1)[:, None] + np.arange(window)[None, :]
    return x[idx]


def chunks(n: int, shift: int, window: int = feat.DEFAULT_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Cut rows ``0..n-1`` into causal chunks of ``window`` rows starting at ``shift - window*j``.

    Returns ``(idx, valid)``, both ``(n_chunks, window)``: row indices (padding at the end
    of a chunk repeats its last row) and which positions are real rows.  The model is
    causal, so padding at a chunk's end never changes the predictions of its real rows;
    each row is computed once per epoch with a history of 0..window-1 rows, and a new
    ``shift`` each epoch varies which rows get the long histories.
    """
    starts = np.arange(-(shift % window), n, window)
    pos = starts[:, None] + np.arange(window)[None, :]
    valid = (pos >= 0) & (pos < n)
    # left-trim the first chunk: shift its rows to the chunk start, padding at the end
    first = pos[0][valid[0]]
    pos[0] = np.concatenate([first, np.full(window - len(first), first[-1] if len(first) else 0)])
    valid[0] = np.arange(window) < len(first)
    idx = np.clip(pos, 0, n - 1)
    keep = valid.any(1)
    return idx[keep], valid[keep]


def take_loss(y, batch, weights: dict[str, float], mu: float, sigma: float, off_scale: float = 1.0):
    """The weighted take loss and its terms for model outputs ``y`` (B, 19) of the batch's last rows.

    ``off_scale``: the offset scale the exported model applies to the head's drum offsets
    (``meta["offset_scale"]``: one factor, or a tensor of one per drum); the offsets are
    judged as they will be played.
    """
    v_hat, o_hat, g_hat = y[:, feat.OUT_VEL], y[:, feat.OUT_OFF] * off_scale, y[:, feat.OUT_G]
    hit, onset, v, g = batch["hit"], batch["onset"], batch["v"], batch["g"]
    zero = y.sum() * 0.0
    lv = ((v_hat - v) ** 2)[hit].mean() if hit.any() else zero
    both = hit & onset[:, None]
    lo = ((o_hat - g[:, None]) ** 2)[both].mean() if both.any() else zero
    lg = ((g_hat - g) ** 2)[onset].mean() if onset.any() else zero
    if both.sum() > 1:  # the o_hat of the take loss (rows with both); see the module docs
        oh = o_hat[both]
        r = (oh.mean() - mu / feat.OFF_SCALE) ** 2 + (oh.std() - sigma / feat.OFF_SCALE) ** 2
    else:
        r = zero
    total_w = sum(weights.values())
    loss = (weights["w_v"] * lv + weights["w_o"] * lo + weights["w_g"] * lg + weights["w_r"] * r) / total_w
    return loss, {"loss": loss, "r": r, "vel": lv, "off": lo, "g": lg}


@dataclass
class ModelVersion:
    path: Path
    torchscript: Path
    weights: Path
    losses: list[dict]
    seconds: float
    rejected_steps: int


def base_weights_for(model_path: str | os.PathLike) -> Path:
    """The eager weights beside a TorchScript model (``X.pt`` -> ``X.ckpt`` or ``weights.ckpt``)."""
    p = Path(model_path)
    for cand in (p.with_suffix(".ckpt"), p.parent / "weights.ckpt", p):
        if cand.suffix == ".ckpt" and cand.is_file():
            return cand
    raise ModelError(f"{p}: no eager weights beside it (expected {p.with_suffix('.ckpt')}); "
                     "finetuning needs a rolypoly checkpoint")


#: Parts of the model that read only the score; frozen by default when finetuning (the take
#: teaches timing relative to the musician, which the decoder carries), halving the work.
ENCODER_PARTS = ("enc_in", "enc_phase", "encoder", "ln_enc")


def finetune(model, meta: dict, take, weights: dict[str, float], epochs: int = 20, lr: float = 3e-3,
             batch_size: int = 0, seed: int = 0, on_epoch=None, threads: int = 0, train_encoder: bool = False,
             warmup_steps: int = 0):
    """Finetune ``model`` in place on ``take``; returns (loss table, rejected steps).

    ``batch_size`` counts rows per step (0 = the whole take per step: one step per epoch,
    as in the paper).
    """
    import torch
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)  # live inference leaves it at 1
    frozen = []
    # Learn in the head's own units: the velocity curve, fitted once on GMD, spreads the
    # velocities a drummer's way; through it, the pull towards the score's velocities
    # would be stronger and shake the timing the take is there to teach.
    curve = getattr(model, "vel_curve", None)
    if curve is not None:
        from rolypoly.model.transformer import VelocityCurve
        model.vel_curve = VelocityCurve(curve.x.numel())
    # likewise an offset scale given at export (``meta["offset_scale"]``, in the head's weights)
    from rolypoly.model.transformer import offset_scales, scale_offsets
    scale = offset_scales(meta.get("offset_scale", 1.0) or 1.0)   # one per drum
    rescale = bool((scale != 1.0).any()) and hasattr(model, "head")
    if rescale:
        scale_offsets(model, 1.0 / scale)
    if not train_encoder:
        for name in ENCODER_PARTS:
            for p in getattr(model, name).parameters() if hasattr(model, name) else ():
                if p.requires_grad:
                    p.requires_grad_(False)
                    frozen.append(p)
    try:
        return _finetune(model, meta, take, weights, epochs, lr, batch_size, seed, on_epoch, train_encoder,
                         warmup_steps, torch.from_numpy(scale.astype(np.float32)))
    finally:
        torch.set_num_threads(previous_threads)
        for p in frozen:
            p.requires_grad_(True)
        if curve is not None:
            model.vel_curve = curve
        if rescale:
            scale_offsets(model, scale)


def _finetune(model, meta, take, weights, epochs, lr, batch_size, seed, on_epoch, train_encoder=False,
              warmup_steps=0, off_scale=1.0):
    import torch

    from rolypoly.model.pretrain import optimizer_step
    arr = take_arrays(take)
    if not arr["onset"].any() and weights["w_v"] == 0:
        raise TakeError(f"{take.path}: no onsets in the take and no velocity weight: nothing to learn")
    x_all = torch.from_numpy(arr["x"])
    data = {"hit": torch.from_numpy(arr["hit"]), "onset": torch.from_numpy(arr["onset"]),
            "v": torch.from_numpy(arr["v"]), "g": torch.from_numpy(arr["g"])}
    mu = float(meta.get("offset_mu", -0.0019))
    sigma = float(meta.get("offset_sigma", 0.0094))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    n = x_all.shape[0]
    # batch_size counts rows; a batch holds whole chunks (0 = the whole take)
    window = int(getattr(model, "window", feat.DEFAULT_WINDOW))
    # An incremental (banded) model plays a take as one sequence from its first row: train it
    # the same way, the whole take in one pass (its attention costs the band, not the take).
    whole = int(getattr(model, "span", 0)) > 0 and batch_size <= 0
    per_batch = max(1, batch_size // window) if batch_size > 0 else n // window + 2
    enc = None   # the encoder's output when it is frozen and the take goes in whole
    if whole and not train_encoder and hasattr(model, "decode"):
        # A frozen encoder reads the same score every epoch: encode it once (without dropout).
        with torch.no_grad():
            model.eval()
            enc = model._encode(x_all[None])
            model.train()
    # the head learns unscaled (see finetune) but plays scaled by off_scale: the musician is met as played
    table, rejected, n_steps = [], 0, 0
    for epoch in range(1, epochs + 1):
        if whole:
            idx, valid = np.arange(n)[None], np.ones((1, n), bool)
        else:
            idx, valid = chunks(n, int(rng.integers(0, window)), window)
        idx, valid = torch.from_numpy(idx), torch.from_numpy(valid)
        perm = torch.randperm(idx.shape[0], generator=gen)
        sums = {k: 0.0 for k in ("loss", "r", "vel", "off", "g")}
        steps = 0
        for i in range(0, idx.shape[0], per_batch):
            sel = perm[i:i + per_batch]
            rows, ok = idx[sel], valid[sel]
            y = (model(x_all[rows]) if enc is None else model.decode(x_all[rows], enc))[ok]
            batch = {k: v[rows][ok] for k, v in data.items()}
            loss, terms = take_loss(y, batch, weights, mu, sigma, off_scale)
            if not torch.isfinite(loss):
                rejected += 1
                continue
            backup = [p.detach().clone() for p in params]
            # warmup: Adam's first steps move every weight by about lr at once
            warm = min(1.0, (n_steps + 1) / warmup_steps) if warmup_steps > 0 else 1.0
            optimizer_step(opt, params, loss, lr * warm, grad_clip=1.0)
            n_steps += 1
            if not all(torch.isfinite(p).all() for p in params):
                with torch.no_grad():  # undo a step that broke the weights
                    for p, b in zip(params, backup):
                        p.copy_(b)
                rejected += 1
                continue
            for k in sums:
                sums[k] += float(terms[k].detach())
            steps += 1
        row = {"epoch": epoch, **{k: (v / steps if steps else float("nan")) for k, v in sums.items()}}
        table.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return table, rejected


def train_after_take(cfg, take_path, base_model: str | os.PathLike | None = None,
                     weights: dict[str, float] | None = None, on_progress=None) -> ModelVersion:
    """Finetune the model a take was played with on that take; write a new model version.

    Parameters
    ----------
    cfg : composed config (``cfg.finetune``, ``cfg.models_dir``)
    take_path : a take folder (see :mod:`rolypoly.live.takes`)
    base_model : the TorchScript model to start from (default: the take's model, else ``cfg.engine.model_path``)
    weights : loss weights (see :func:`parse_weights`)
    on_progress : callable receiving one text line per epoch

    Raises
    ------
    TakeError
        Incomplete take or one with nothing to learn from.
    ModelError
        No usable base weights.
    """
    import torch

    from rolypoly.live.takes import load_take
    from rolypoly.model.export import export_torchscript
    from rolypoly.model.transformer import load_checkpoint, save_checkpoint
    t0 = time.perf_counter()
    take = load_take(take_path)
    weights = weights or parse_weights([], cfg.finetune)
    base = base_model or take.settings.get("model") or cfg.engine.model_path
    ckpt = base_weights_for(base)
    model, meta = load_checkpoint(ckpt)
    torch.manual_seed(int(cfg.seed))
    fc = cfg.finetune
    say = on_progress or (lambda text: None)

    def epoch_report(row):
        say(f"finetune epoch {row['epoch']}/{fc.epochs}: loss {row['loss']:.4f} (r {row['r']:.4f}, "
            f"vel {row['vel']:.4f}, off {row['off']:.4f}, g {row['g']:.4f})")

    table, rejected = finetune(model, meta, take, weights, epochs=int(fc.epochs), lr=float(fc.lr),
                               batch_size=int(getattr(fc, "batch_size", 0)), seed=int(cfg.seed),
                               on_epoch=epoch_report, threads=int(getattr(fc, "threads", 0)),
                               train_encoder=bool(getattr(fc, "train_encoder", False)),
                               warmup_steps=int(getattr(fc, "warmup_steps", 0)))
    if not table or not all(math.isfinite(row["loss"]) for row in table[-1:]):
        raise ModelError(f"finetune on {take.path} gave a non-finite loss; the previous model is kept")
    # A new version folder, written under a temporary name and renamed into place.
    root = Path(cfg.models_dir) / "versions"
    root.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name.split("-v")[-1]) for p in root.glob("*-v*") if p.name.split("-v")[-1].isdigit()]
    number = max(existing, default=0) + 1
    name = f"{Path(ckpt).stem if Path(ckpt).stem != 'weights' else 'rolypoly'}-v{number:03d}"
    if Path(ckpt).stem == "weights":
        name = f"{Path(ckpt).parent.name.rsplit('-v', 1)[0]}-v{number:03d}"
    final = root / name
    with atomic_dir(final) as tmp:
        meta = dict(meta)
        meta["version"] = name
        meta["finetuned_from"] = str(ckpt)
        meta["take"] = str(take.path)
        meta["finetune"] = {"weights": weights, "epochs": int(fc.epochs), "lr": float(fc.lr)}
        save_checkpoint(model, meta, tmp / "weights.ckpt")
        export_torchscript(model, meta, tmp / "model.pt")
        (tmp / "losses.json").write_text(json.dumps(table, indent=1))
        (tmp / "take.txt").write_text(str(Path(take.path).resolve()) + "\n")
        (tmp / "version.json").write_text(json.dumps({"version": name, "base": str(ckpt), "take": str(take.path),
                                                      "weights": weights, "rejected_steps": rejected,
                                                      "seconds": time.perf_counter() - t0}, indent=1))
    say(f"new model version {final}")
    return ModelVersion(final, final / "model.pt", final / "weights.ckpt", table, time.perf_counter() - t0, rejected)
