"""Pretraining on GMD: teacher-forced next-row prediction with a synthetic partner.

The recipe, in order of how much it matters:

* random windows of ``window`` rows from the training takes (both the 16/triplet grid
  preparation and the 16th-grid one, so the model knows both kinds of scores);
* the loss is an L1 (the metric is a mean absolute error) on the offsets and velocities
  of the drums in the score only, and on the musician offset ``g`` of every row;
* a share of windows gets a synthetic partner: ``tau_g`` = the row's mean realised drum
  offset plus noise, so the decoder learns to follow a musician;
* a share of windows replaces the realised history by the model's own predictions (made
  without gradient) or by zeros, so that playing alone (free-running) does not drift;
* a share of windows reads an *accented* score: each drum's velocity is the take's mean at
  that bar position (what a written score with accents looks like) instead of the take's
  mean; without it a score that already carries accents gets them twice (a kick written
  at 104 on the beat played at 127);
* ``train.init_from`` warm-starts from the weights of another checkpoint of the same shapes
  (an incremental model from the first published one: the weights are interchangeable);
* AdamW, linear warmup, cosine decay, gradient clipping, fixed seeds;
* a checkpoint (``last.pt``, with optimizer state) every ``checkpoint_every`` steps: the
  same command resumes an interrupted run; ``best.pt`` keeps the best validation loss;
  ``loss.png`` plots the curves; ``keep_every`` also keeps weights-only snapshots
  (``step-NNNNNN.pt``) along the run, for :func:`average_checkpoints`.

Works under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on GPU): each process
samples its own windows; rank 0 validates and writes.

Examples
--------
>>> from rolypoly.config import load_config
>>> result = pretrain(load_config(["train.max_steps=2"]))     # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import ConfigError, DataError, ModelError
from rolypoly.io import atomic_path, write_text
from rolypoly.score import features as feat
from rolypoly.score.features import OFF_CLIP, OFF_SCALE, encode_rows

VERSION_PREFIX = "rolypoly-pretrained"


# ----------------------------------------------------------------------------- data

@dataclass
class RowData:
    """Model-ready rows of a set of takes (concatenated) and the valid window starts."""

    x: np.ndarray        # (N, 22) float32 inputs, tau_g = 0
    vel: np.ndarray      # (N, 9) float32 performed velocity / 127
    off: np.ndarray      # (N, 9) float32 scaled offsets
    g: np.ndarray        # (N,) float32 scaled mean offset of the row's hits
    hit: np.ndarray      # (N, 9) bool, drums in the score at each row
    bar_ms: np.ndarray   # (N,) float32
    win_starts: np.ndarray  # (W,) int64 first row of every full window
    acc_vel: np.ndarray | None = None  # (N, 9) float32 accented score velocity / 127

    def __len__(self) -> int:
        return len(self.win_starts)


def accented_scores(vel: np.ndarray, phase: np.ndarray, starts) -> np.ndarray:
    """Per take, drum and bar position (48 bins), the mean performed velocity at the score's hits.

    Examples
    --------
    >>> vel = np.array([[100.], [50.], [90.], [60.]])
    >>> accented_scores(vel, np.array([0., .5, 0., .5]), [0, 4])[:, 0].tolist()
    [95.0, 55.0, 95.0, 55.0]
    """
    vel = np.asarray(vel, dtype=np.float64)
    hit = vel > 0
    bins = np.remainder(np.floor(np.asarray(phase) * 48 + 0.5), 48).astype(np.int64)
    out = np.zeros_like(vel)
    for s, e in zip(starts[:-1], starts[1:]):
        sums = np.zeros((48, vel.shape[1]))
        counts = np.zeros((48, vel.shape[1]))
        np.add.at(sums, bins[s:e], vel[s:e] * hit[s:e])
        np.add.at(counts, bins[s:e], hit[s:e])
        mean = sums / np.maximum(counts, 1)
        out[s:e] = np.where(hit[s:e], mean[bins[s:e]], 0.0)
    return out.astype(np.float32)


def rows_from_takes(takes, block: int) -> RowData:
    """Turn :class:`rolypoly.score.gmd.Takes` into :class:`RowData` (takes shorter than a window are dropped)."""
    a = takes.arrays
    hit = a["vel"] > 0
    x = encode_rows(a["score_vel"], a["off"] * hit, a["bpm"], a["tsig"], a["phase"], np.zeros(len(hit)))
    off = x[:, feat.OFF].copy()
    n = np.maximum(hit.sum(1), 1)
    g = np.clip((a["off"] * hit).sum(1) / n / OFF_SCALE, -OFF_CLIP, OFF_CLIP).astype(np.float32)
    starts = []
    for i in range(len(takes)):
        s, e = int(takes.starts[i]), int(takes.starts[i + 1])
        if e - s >= block:
            starts.append(np.arange(s, e - block + 1))
    if not starts:
        raise DataError(f"no take has at least {block} rows (model.window)")
    acc = accented_scores(a["vel"], a["phase"], [int(v) for v in takes.starts]) / 127.0
    return RowData(x, (a["vel"] / 127.0).astype(np.float32), off, g, hit, a["bar_ms"].astype(np.float32),
                   np.concatenate(starts).astype(np.int64), acc.astype(np.float32))


def concat_rows(parts: list[RowData]) -> RowData:
    out, base = [], 0
    for p in parts:
        out.append(p.win_starts + base)
        base += len(p.x)
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    acc = cat("acc_vel") if all(p.acc_vel is not None for p in parts) else None
    return RowData(cat("x"), cat("vel"), cat("off"), cat("g"), cat("hit"), cat("bar_ms"), np.concatenate(out), acc)


def load_training_data(cfg, block: int):
    """``(train RowData, validation RowData, offset (mu, sigma) of train, description)``."""
    tc = cfg.train
    source = str(tc.data)
    if source == "synthetic":
        from rolypoly.sim.corpus import synthetic_takes
        takes = {"16": synthetic_takes(seed=int(cfg.seed))}
        grids = ["16"]
    elif source == "gmd":
        from rolypoly.score.gmd import load_gmd
        grids = list(tc.grids)
        takes = {g: load_gmd(cfg, grid=g, show_progress=False) for g in grids}
    else:
        raise ConfigError(f"train.data={source!r}: choose gmd or synthetic")
    val_grid = "16" if "16" in takes else grids[0]
    train = concat_rows([rows_from_takes(takes[g].split("train"), block) for g in grids])
    val = rows_from_takes(takes[val_grid].split("validation"), block)
    mu, sigma = takes[grids[0]].split("train").offset_stats()
    desc = f"{source} train ({', '.join(grids)} grids, {len(train.x)} rows), validation ({val_grid} grid, {len(val.x)} rows)"
    return train, val, (mu, sigma), desc


# ----------------------------------------------------------------------------- batches

def make_batch(data: RowData, starts: np.ndarray, block: int, rng: np.random.Generator | None = None,
               partner_share: float = 0.0, partner_row_prob: float = 0.8, partner_noise_ms: float = 8.0,
               accent_share: float = 0.0):
    """Gather windows; with ``rng`` give a share of them a synthetic partner ``tau_g``
    and a share (``accent_share``) the accented score velocities.

    Returns numpy arrays ``x (B, T, 22), vel, off (B, T, 9), g (B, T), hit (B, T, 9)``.
    """
    idx = starts[:, None] + np.arange(block)[None, :]
    x = data.x[idx].copy()
    g = data.g[idx]
    if rng is not None and partner_share > 0:
        B, T = g.shape
        who = rng.random(B) < partner_share
        rows = (rng.random((B, T)) < partner_row_prob) & who[:, None]
        noise = rng.normal(0.0, 1.0, (B, T)) * (partner_noise_ms / data.bar_ms[idx]) / OFF_SCALE
        x[:, :, 21] = np.where(rows, np.clip(g + noise, -OFF_CLIP, OFF_CLIP), 0.0)
    if rng is not None and accent_share > 0 and data.acc_vel is not None:
        acc = rng.random(len(starts)) < accent_share
        if acc.any():
            x[acc, :, feat.VEL0:feat.VEL1] = data.acc_vel[idx[acc]]
    return x, data.vel[idx], data.off[idx], g, data.hit[idx]


def loss_terms(pred, vel, off, g, hit):
    """L1 losses: velocities and offsets over score hits, ``g`` over every row."""
    import torch
    m = hit.float()
    n = m.sum().clamp_min(1.0)
    l_vel = ((pred[:, :, feat.OUT_VEL] - vel).abs() * m).sum() / n
    l_off = ((pred[:, :, feat.OUT_OFF] - off).abs() * m).sum() / n
    l_g = (pred[:, :, feat.OUT_G] - g).abs().mean()
    return l_vel, l_off, l_g, torch.stack([l_vel, l_off, l_g]).detach()


def lr_at(step: int, tc) -> float:
    """Linear warmup then cosine decay to ``min_lr_ratio`` of the peak."""
    peak, warm, total = float(tc.lr), int(tc.warmup_steps), max(int(tc.max_steps), 1)
    if step < warm:
        return peak * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    floor = float(tc.min_lr_ratio)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def optimizer_step(opt, params, loss, lr: float, grad_clip: float) -> None:
    """One step at learning rate ``lr``: gradients of ``loss``, clipped to norm ``grad_clip``."""
    import torch
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()


def corrupt_history(model, x, rng, self_share: float, zero_share: float, passes: int = 1,
                    from_real: float = 0.5):
    """Replace the realised history of some windows by the model's own predictions or zeros.

    Own predictions are made without gradient, from the real history on a share
    ``from_real`` of those windows and from a zero history on the rest; each further pass
    feeds the previous pass's offsets back as history.  A causal model's row ``t`` after
    ``p`` passes from zeros equals playing alone for ``t < p``, and the passes shrink what
    the drummer's real timing leaks into the "own" history.
    """
    import torch
    B = x.shape[0]
    u = torch.from_numpy(rng.random(B))
    zero = u < zero_share
    own = (u >= zero_share) & (u < zero_share + self_share)
    if zero.any():
        x[zero, :, feat.OFF] = 0.0
    if own.any():
        xo = x[own].clone()
        from_zero = torch.from_numpy(rng.random(int(own.sum())) < 1.0 - from_real)
        xo[from_zero, :, feat.OFF] = 0.0
        hit = (xo[:, :, feat.VEL] > 0).float()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for _ in range(max(1, int(passes))):
                pred = model(xo)
                xo[:, :, feat.OFF] = pred[:, :, feat.OUT_OFF].clamp(-OFF_CLIP, OFF_CLIP) * hit
        model.train(was_training)
        x[own] = xo
    return x


def _plain(node) -> dict:
    """A config node as plain JSON-able Python (lists stay lists)."""
    try:
        from omegaconf import OmegaConf
        return json.loads(json.dumps(OmegaConf.to_container(node, resolve=True), default=str))
    except (ImportError, ValueError):
        return json.loads(json.dumps(dict(node), default=str))


@dataclass
class TrainResult:
    out_dir: str
    steps: int
    best_val: float
    best_step: int
    seconds: float
    resumed_from: int


def _without_history(x):
    """The same windows with no realised offsets (the model playing from scratch)."""
    x = x.clone()
    x[:, :, feat.OFF] = 0.0
    return x


def _validate(model, val: RowData, block: int, batches: int, batch_size: int, device, g_weight: float) -> float:
    """Mean validation loss over fixed windows: teacher-forced plus zero-history (free-running proxy)."""
    import torch
    rng = np.random.default_rng(0)
    starts = rng.choice(val.win_starts, size=min(len(val.win_starts), batches * batch_size), replace=False)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            x, vel, off, g, hit = (torch.from_numpy(a).to(device) for a in make_batch(val, starts[i:i + batch_size], block))
            for hist in (x, _without_history(x)):
                lv, lo, lg, _ = loss_terms(model(hist), vel, off, g, hit)
                total += float(lv + lo + g_weight * lg) * len(x)
                count += len(x)
    model.train()
    return total / max(count, 1)  # mean of the teacher-forced and zero-history losses


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    tr = [h for h in history if "train" in h]
    va = [h for h in history if "val" in h]
    if tr:
        ax.plot([h["step"] for h in tr], [h["train"] for h in tr], label="train (L1, scaled units)", alpha=0.7)
    if va:
        ax.plot([h["step"] for h in va], [h["val"] for h in va], "o-", label="validation")
    ax.set_xlabel("step"); ax.set_ylabel("loss"); ax.set_title("rolypoly pretraining"); ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _setup_distributed(tc):
    """``(rank, world, device, is_ddp)`` from torchrun's environment."""
    import torch
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    want = str(tc.device)
    if want not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device={want!r}: choose auto, cpu or cuda")
    use_cuda = torch.cuda.is_available() if want == "auto" else want == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available")
    if world > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return rank, world, device, world > 1


def pretrain(cfg, log=print) -> TrainResult:
    """Run (or resume) pretraining as configured by ``cfg.train`` and ``cfg.model``.

    Writes ``out_dir/last.pt`` (resumable state), ``out_dir/best.pt`` (best validation,
    weights and meta only), ``out_dir/loss.png`` and ``out_dir/history.json``.
    """
    if str(cfg.model.get("kind", "performance")) == "events":  # the free-mode event model
        from rolypoly.free.train import pretrain_events
        return pretrain_events(cfg, log)
    import torch

    from rolypoly.model.transformer import (
        ModelConfig,
        RolypolyModel,
        load_weights,
        read_checkpoint,
        save_checkpoint,
    )
    from rolypoly.report import progress

    tc = cfg.train
    conf = ModelConfig.from_cfg(cfg.model)
    for key in ("max_steps", "batch_size", "eval_every", "checkpoint_every"):
        if int(tc[key]) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {tc[key]}")
    rank, world, device, is_ddp = _setup_distributed(tc)
    if int(tc.threads) > 0:
        torch.set_num_threads(int(tc.threads))
    seed = int(cfg.seed)
    torch.manual_seed(seed + rank)
    rng = np.random.default_rng(seed + 1000 * rank)
    out = Path(str(tc.out_dir))
    block = conf.window

    train, val, (mu, sigma), data_desc = load_training_data(cfg, block)
    model = RolypolyModel(conf).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=float(tc.lr), weight_decay=float(tc.weight_decay),
                            betas=(0.9, 0.98))
    step, best_val, best_step, history, elapsed0 = 0, float("inf"), -1, [], 0.0
    last = out / "last.pt"
    if last.is_file():  # resume: same command, same out_dir
        state = read_checkpoint(last)
        if state["meta"].get("model_config") != asdict(conf):
            raise ModelError(f"{last}: was trained with model {state['meta'].get('model_config')}, not "
                             f"{asdict(conf)}; use another train.out_dir or delete it")
        load_weights(model, state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best_val, best_step = int(state["step"]), float(state["best_val"]), int(state["best_step"])
        history, elapsed0 = list(state.get("history", [])), float(state.get("elapsed_s", 0.0))
        rng = np.random.default_rng(seed + 1000 * rank + step)
        torch.manual_seed(seed + rank + step)
        if rank == 0:
            log(f"resuming {last} at step {step} (best validation {best_val:.4f} at step {best_step})")
    elif str(tc.init_from or ""):
        src = str(tc.init_from)
        state = read_checkpoint(src)
        try:
            load_weights(model, state["model"])
        except RuntimeError as exc:
            raise ModelError(f"train.init_from={src}: weights do not fit model {asdict(conf)} "
                             f"({str(exc).splitlines()[0]})") from None
        if rank == 0:
            log(f"starting from the weights of {src} ({state['meta'].get('version', '?')})")
    resumed_from = step
    net = torch.nn.parallel.DistributedDataParallel(model) if is_ddp else model
    meta = {"version": f"{VERSION_PREFIX}-{cfg.model.get('name', 'custom')}", "model_config": asdict(conf),
            "init_from": str(tc.init_from or ""),
            "model_name": str(cfg.model.get("name", "custom")), "offset_mu": mu, "offset_sigma": sigma,
            "data": data_desc, "seed": seed, "train": _plain(tc), "world_size": world}
    if rank == 0:
        log(f"{data_desc}; {model.n_params()} parameters; device {device}; world {world}")

    t0 = time.perf_counter()
    running = None
    bar = progress(range(step, int(tc.max_steps)), total=int(tc.max_steps) - step, desc="pretrain",
                   disable=None if rank == 0 else True)
    net.train()
    for step in bar:
        lr = lr_at(step, tc)
        starts = rng.choice(train.win_starts, size=int(tc.batch_size))
        x, vel, off, g, hit = (torch.from_numpy(a).to(device) for a in make_batch(
            train, starts, block, rng, float(tc.partner_share), float(tc.partner_row_prob),
            float(tc.partner_noise_ms), float(tc.accent_share)))
        x = corrupt_history(model, x, rng, float(tc.self_history_share), float(tc.zero_history_share),
                            int(tc.self_history_passes), float(tc.self_history_from_real))
        lv, lo, lg, parts = loss_terms(net(x), vel, off, g, hit)
        loss = lv + lo + float(tc.g_weight) * lg
        if not torch.isfinite(loss):
            raise ModelError(f"training loss became {float(loss)} at step {step}; lower train.lr")
        optimizer_step(opt, model.parameters(), loss, lr, float(tc.grad_clip))
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if rank == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.2e}", refresh=False)
        done = step + 1
        if rank == 0 and done % int(tc.log_every) == 0:
            history.append({"step": done, "train": running, "lr": lr, "vel": float(parts[0]),
                            "off": float(parts[1]), "g": float(parts[2])})
            rate = (done - resumed_from) / max(time.perf_counter() - t0, 1e-9)
            log(f"step {done}/{tc.max_steps} loss {running:.4f} (vel {float(parts[0]):.4f} off "
                f"{float(parts[1]):.4f} g {float(parts[2]):.4f}) lr {lr:.2e} {rate:.2f} steps/s")
        last_step = done == int(tc.max_steps)
        if done % int(tc.eval_every) == 0 or last_step:
            if rank == 0:
                v = _validate(model, val, block, int(tc.eval_batches), int(tc.batch_size), device, float(tc.g_weight))
                history.append({"step": done, "val": v})
                if v < best_val:
                    best_val, best_step = v, done
                    save_checkpoint(model, {**meta, "step": done, "val_loss": v,
                                            "train_seconds": elapsed0 + time.perf_counter() - t0}, out / "best.pt")
                log(f"validation at step {done}: {v:.4f} (best {best_val:.4f} at step {best_step})")
                _plot(history, out / "loss.png")
            if is_ddp:
                import torch.distributed as dist
                dist.barrier()
        if rank == 0 and (done % int(tc.checkpoint_every) == 0 or last_step):
            save_checkpoint(model, {**meta, "step": done}, last, extra={
                "optimizer": opt.state_dict(), "step": done, "best_val": best_val, "best_step": best_step,
                "history": history, "elapsed_s": elapsed0 + time.perf_counter() - t0})
            write_text(out / "history.json", json.dumps(history))  # atomically, like the checkpoint
        if rank == 0 and int(tc.keep_every) and done % int(tc.keep_every) == 0:
            save_checkpoint(model, {**meta, "step": done}, out / f"step-{done:06d}.pt")
    seconds = elapsed0 + time.perf_counter() - t0
    if is_ddp:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(str(out), int(tc.max_steps), best_val, best_step, seconds, resumed_from)
