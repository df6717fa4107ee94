"""Training the event model on GMD train (``rolypoly pretrain model=events``).

The same machinery as the performance model's pretraining (:mod:`rolypoly.model.pretrain`):
fixed seeds, AdamW with linear warmup and cosine decay, gradient clipping, a resumable
``last.pt`` every ``checkpoint_every`` steps, ``best.pt`` at the best validation loss,
``history.json`` and ``loss.png``.  The recipe lives in ``model.train`` of
``configs/model/events.yaml`` (override as ``model.train.max_steps=...``).

Data: every 4/4 take of the 16th-grid GMD preparation becomes events
(:func:`rolypoly.free.encode.events_from_rows`, performed velocities); training windows are
``model.window`` consecutive events of one take, each predicting the next event.  The loss
is the gap's cross-entropy + the drums' binary cross-entropy (summed over the 9 drums) +
``vel_weight`` x the velocity classes' cross-entropy over sounding drums.

Examples
--------
>>> from rolypoly.config import load_config
>>> pretrain_events(load_config(["model=events", "model.train.max_steps=2"]))   # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import ConfigError, DataError, ModelError
from rolypoly.free import encode as enc
from rolypoly.io import atomic_path


@dataclass
class EventData:
    x: np.ndarray          # (N, N_FEAT) inputs
    gap: np.ndarray        # (N,) gap class of the next event (0 for a take's last event: never a target)
    q: np.ndarray          # (N, 48) drum-head query of the next event
    drums: np.ndarray      # (N, 9) next event's drums
    vcls: np.ndarray       # (N, 9) next event's velocity classes (-1 silent)
    starts: np.ndarray     # (W,) valid window starts

    def __len__(self) -> int:
        return len(self.starts)


def take_events(takes, four_four_only: bool = True) -> list:
    """Events of every take (4/4 takes only by default)."""
    out = []
    for i in range(len(takes)):
        if four_four_only and str(takes.meta["time_signature"][i]) not in ("4-4", "4/4"):
            continue
        r = takes.rows(i)
        ev = enc.events_from_rows(r["vel"], r["phase"], r["bar"])
        if len(ev) > 1:
            out.append(ev)
    return out


def event_data(events: list, window: int) -> EventData:
    xs, gs, qs, ds, vs, starts = [], [], [], [], [], []
    base = 0
    for ev in events:
        E = len(ev)
        xs.append(enc.encode_events(ev, enc.segment_styles(ev)))
        g, q, d, v = enc.targets(ev)
        gs.append(np.append(g, 0)); qs.append(np.vstack([q, np.zeros((1, q.shape[1]), np.float32)]))
        ds.append(np.vstack([d, np.zeros((1, 9), np.float32)])); vs.append(np.vstack([v, -np.ones((1, 9), np.int64)]))
        if E - 1 >= window:  # a window's last input must still have a next event
            starts.append(base + np.arange(0, E - window))
        base += E
    if not starts:
        raise DataError(f"no take has more than {window} events (model.window)")
    return EventData(np.concatenate(xs), np.concatenate(gs), np.concatenate(qs), np.concatenate(ds),
                     np.concatenate(vs), np.concatenate(starts).astype(np.int64))


def style_quantiles(events: list) -> dict:
    """Quantiles (0, 0.05, ..., 1) of the 4-bar style codes of ``events``: the knobs' scale."""
    st = np.concatenate([enc.segment_styles(ev) for ev in events])
    qs = np.linspace(0, 1, 21)
    return {"q": qs.round(2).tolist(), "density": np.quantile(st[:, 0], qs).round(5).tolist(),
            "complexity": np.quantile(st[:, 1], qs).round(5).tolist()}


def velocity_centers(takes) -> list:
    """Mean performed velocity of each drum within each velocity class over 4/4 takes (9 x 3)."""
    v = takes.arrays["vel"]
    out = np.tile(np.array(enc.VEL_CENTERS, dtype=np.float64), (9, 1))
    cls = enc.vel_class(v)
    for d in range(9):
        for c in range(enc.N_VEL):
            sel = cls[:, d] == c
            if sel.sum() > 20:
                out[d, c] = float(v[sel, d].mean())
    return out.round(1).tolist()


def velocity_quantiles(takes, n: int = 11) -> list:
    """Per drum and velocity class, ``n`` quantiles (0..1) of the performed velocities (9 x 3 x n).

    Generation draws a hit's velocity within its sampled class from these, so generated
    velocities keep GMD's distribution; a class seldom seen falls back to its typical value.
    """
    v = takes.arrays["vel"]
    cls = enc.vel_class(v)
    qs = np.linspace(0, 1, n)
    out = np.zeros((9, enc.N_VEL, n))
    bounds = (1,) + enc.VEL_BOUNDS + (128,)
    for d in range(9):
        for c in range(enc.N_VEL):
            sel = cls[:, d] == c
            if sel.sum() > 20:
                out[d, c] = np.quantile(v[sel, d], qs)
            else:
                out[d, c] = np.linspace(bounds[c], bounds[c + 1] - 1, n)
    return out.round(1).tolist()


def batch(data: EventData, starts: np.ndarray, window: int):
    idx = starts[:, None] + np.arange(window)[None, :]
    return data.x[idx], data.gap[idx], data.q[idx], data.drums[idx], data.vcls[idx]


def losses(net, x, h0, gap, q, drums, vcls, vel_weight: float):
    """(total, parts tensor [gap CE, drums BCE, vel CE])."""
    import torch
    import torch.nn.functional as F
    gl, out, _ = net(x, h0)
    l_gap = F.cross_entropy(gl.reshape(-1, gl.shape[-1]), gap.reshape(-1))
    head = net.drum_head(out, q)
    if head.shape[-1] == enc.N_MASKS:  # joint head: the combination, then the classes given it
        bits = torch.from_numpy(1 << np.arange(enc.N_DRUMS)).to(drums.dtype)
        mask = (drums * bits).sum(-1).round().long().reshape(-1)
        real = mask > 0   # a take's last event has no next one: no target
        l_drum = F.cross_entropy(head.reshape(-1, enc.N_MASKS)[real], mask[real]) if bool(real.any()) else head.sum() * 0.0
        vl = net.vel_head(out, q, drums).reshape(-1, enc.N_VEL)
    else:
        l_drum = F.binary_cross_entropy_with_logits(head[..., :9], drums, reduction="none").sum(-1).mean()
        vl = head[..., 9:].reshape(-1, enc.N_VEL)
    vt = vcls.reshape(-1)
    hit = vt >= 0
    l_vel = F.cross_entropy(vl[hit], vt[hit]) if bool(hit.any()) else vl.sum() * 0.0
    total = l_gap + l_drum + vel_weight * l_vel
    return total, torch.stack([l_gap, l_drum, l_vel]).detach()


def _validate(net, val: EventData, window: int, batches: int, batch_size: int, vel_weight: float) -> float:
    import torch
    rng = np.random.default_rng(0)
    starts = rng.choice(val.starts, size=min(len(val.starts), batches * batch_size), replace=False)
    net.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            b = [torch.from_numpy(a) for a in batch(val, starts[i:i + batch_size], window)]
            loss, _ = losses(net, b[0], net.initial_state(len(b[0])), b[1], b[2], b[3], b[4], vel_weight)
            total += float(loss) * len(b[0]); n += len(b[0])
    net.train()
    return total / max(n, 1)


@dataclass
class EventTrainResult:
    out_dir: str
    steps: int
    best_val: float
    best_step: int
    seconds: float
    resumed_from: int


def pretrain_events(cfg, log=print) -> EventTrainResult:
    """Run (or resume) event-model training as configured by ``cfg.model`` (see module docs)."""
    import torch

    from rolypoly.free.network import EventConfig, make_net
    from rolypoly.model.pretrain import _plain, _plot, lr_at, optimizer_step
    from rolypoly.model.transformer import read_checkpoint, save_checkpoint
    from rolypoly.score.gmd import load_gmd

    tc = cfg.model.train
    conf = EventConfig.from_cfg(cfg.model)
    for key in ("max_steps", "batch_size", "eval_every", "checkpoint_every"):
        if int(tc[key]) < 1:
            raise ConfigError(f"model.train.{key} must be >= 1, got {tc[key]}")
    if int(tc.threads) > 0:
        torch.set_num_threads(int(tc.threads))
    seed = int(cfg.seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = Path(str(tc.out_dir))
    takes = load_gmd(cfg, grid="16", show_progress=False)
    train_takes = takes.split("train")
    tr_ev, va_ev = take_events(train_takes), take_events(takes.split("validation"))
    train, val = event_data(tr_ev, conf.window), event_data(va_ev, conf.window)
    vel_weight = float(tc.vel_weight)
    net = make_net(conf)
    opt = torch.optim.AdamW(net.parameters(), lr=float(tc.lr), weight_decay=float(tc.weight_decay), betas=(0.9, 0.98))
    step, best_val, best_step, history, elapsed0 = 0, float("inf"), -1, [], 0.0
    last = out / "last.pt"
    if last.is_file():
        state = read_checkpoint(last)
        if state["meta"].get("model_config") != asdict(conf):
            raise ModelError(f"{last}: was trained with {state['meta'].get('model_config')}, not {asdict(conf)}; "
                             f"use another model.train.out_dir or delete it")
        net.load_state_dict(state["model"]); opt.load_state_dict(state["optimizer"])
        step, best_val, best_step = int(state["step"]), float(state["best_val"]), int(state["best_step"])
        history, elapsed0 = list(state.get("history", [])), float(state.get("elapsed_s", 0.0))
        rng = np.random.default_rng(seed + step)
        torch.manual_seed(seed + step)
        log(f"resuming {last} at step {step} (best validation {best_val:.4f} at step {best_step})")
    resumed_from = step
    meta = {"version": f"rolypoly-{cfg.model.get('name', 'events')}", "model_config": asdict(conf),
            "format": "rolypoly-events-1", "kind": "events", "steps": enc.STEPS, "max_delta": enc.MAX_DELTA,
            "n_feat": enc.N_FEAT, "vel_bounds": list(enc.VEL_BOUNDS), "style_bars": enc.STYLE_BARS,
            "density_scale": enc.DENSITY_SCALE, "vel_centers": velocity_centers(train_takes), "vel_quantiles": velocity_quantiles(train_takes),
            "style_quantiles": style_quantiles(tr_ev), "seed": seed, "train": _plain(tc),
            "data": f"GMD train, 4/4 takes, 16th grid: {len(tr_ev)} takes, {len(train.x)} events; "
                    f"validation {len(va_ev)} takes, {len(val.x)} events"}
    log(f"{meta['data']}; {net.n_params()} parameters")
    W, B = conf.window, int(tc.batch_size)
    t0 = time.perf_counter()
    running = None
    net.train()
    for it in range(step, int(tc.max_steps)):
        lr = lr_at(it, tc)
        b = [torch.from_numpy(a) for a in batch(train, rng.choice(train.starts, size=B), W)]
        loss, parts = losses(net, b[0], net.initial_state(B), b[1], b[2], b[3], b[4], vel_weight)
        if not torch.isfinite(loss):
            raise ModelError(f"event-model loss became {float(loss)} at step {it}; lower model.train.lr")
        optimizer_step(opt, net.parameters(), loss, lr, float(tc.grad_clip))
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        done = it + 1
        if done % int(tc.log_every) == 0:
            history.append({"step": done, "train": running, "lr": lr, "gap": float(parts[0]),
                            "drums": float(parts[1]), "vel": float(parts[2])})
            rate = (done - resumed_from) / max(time.perf_counter() - t0, 1e-9)
            log(f"step {done}/{tc.max_steps} loss {running:.4f} (gap {float(parts[0]):.3f} drums "
                f"{float(parts[1]):.3f} vel {float(parts[2]):.3f}) lr {lr:.2e} {rate:.2f} steps/s")
        last_step = done == int(tc.max_steps)
        if done % int(tc.eval_every) == 0 or last_step:
            v = _validate(net, val, W, int(tc.eval_batches), B, vel_weight)
            history.append({"step": done, "val": v})
            if v < best_val:
                best_val, best_step = v, done
                save_checkpoint(net, {**meta, "step": done, "val_loss": v,
                                      "train_seconds": elapsed0 + time.perf_counter() - t0}, out / "best.pt")
            log(f"validation at step {done}: {v:.4f} (best {best_val:.4f} at step {best_step})")
            _plot(history, out / "loss.png")
        if done % int(tc.checkpoint_every) == 0 or last_step:
            save_checkpoint(net, {**meta, "step": done}, last, extra={
                "optimizer": opt.state_dict(), "step": done, "best_val": best_val, "best_step": best_step,
                "history": history, "elapsed_s": elapsed0 + time.perf_counter() - t0})
            with atomic_path(out / "history.json") as tmp:   # a crash never leaves half a history
                tmp.write_text(json.dumps(history))
    return EventTrainResult(str(out), int(tc.max_steps), best_val, best_step,
                            elapsed0 + time.perf_counter() - t0, resumed_from)


def load_event_checkpoint(path):
    """``(EventNet in eval mode, meta)`` from a ``best.pt``/``last.pt`` of :func:`pretrain_events`."""
    from rolypoly.free.network import EventConfig, make_net
    from rolypoly.model.transformer import read_checkpoint
    payload = read_checkpoint(path)
    meta = dict(payload["meta"])
    if meta.get("kind") != "events":
        raise ModelError(f"{path}: not an event-model checkpoint (kind {meta.get('kind')!r})")
    net = make_net(EventConfig.from_cfg(meta["model_config"]))
    try:
        net.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not match the event model ({str(exc).splitlines()[0]})") from None
    net.eval()
    return net, meta


def is_event_checkpoint(path) -> bool:
    """Whether ``path`` is an eager checkpoint of the event model (not of the performance model)."""
    try:
        from rolypoly.model.transformer import read_checkpoint
        return read_checkpoint(path)["meta"].get("kind") == "events"
    except ModelError:
        return False


def export_checkpoint(ckpt, output):
    """Export an event-model checkpoint to TorchScript (``rolypoly export CKPT models/events.pt``)."""
    from rolypoly.free.network import export_events
    net, meta = load_event_checkpoint(ckpt)
    return export_events(net, meta, output), meta
