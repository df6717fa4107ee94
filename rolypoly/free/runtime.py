"""The exported event model at run time, and the sampler that draws events from it.

:func:`load_events` loads a TorchScript event model (``models/events.pt``) and checks it;
:class:`EventSampler` keeps the model's state, reads events as they are played
(:meth:`EventSampler.feed`) and draws what comes next (:meth:`EventSampler.sample`), one
event per call.  All randomness comes from its own ``numpy`` generator (seedable); the
model itself is deterministic.

Sampling, per event:

1. the gap to the next event from ``softmax(gap_logits / temperature)``, restricted to a
   window of allowed positions when asked (a fill must land in its empty bar);
2. which drums sound at that position.  A *joint* model (``drum_head`` joint) scores every
   combination: one is drawn from ``softmax(logits / drum_temperature)``, after the
   ``generate_vels`` window ``(lo, hi)`` on each drum's marginal probability has removed
   the combinations holding a drum below ``lo`` and those lacking a drum at or above
   ``hi``.  An *independent* model gives each drum ``p = sigmoid(logit / drum_temperature)``,
   gated the same way, each drum drawn on its own (an event with no drum left plays its
   most probable one);
3. each sounding drum's velocity class from ``softmax(class_logits / vel_temperature)``
   (the joint model's given the combination drawn), and (:meth:`EventRuntime.velocities`)
   a velocity within that class from GMD train's quantiles.

``drum_temperature`` and ``vel_temperature`` default to ``temperature``.  With
``loop_temperature`` set, the gap and drum temperatures are cooled towards it by the share of
repeated bars among the 4 bars before the style was frozen (:meth:`EventSampler.repetition`):
a looped groove is played again with little variation, a varied one keeps the model's odds.

The style code the model is conditioned on comes from the ``density`` and ``complexity``
knobs (0..1, mapped through the training data's quantiles: 0.5 is a typical GMD groove)
or, for a knob set to ``None``, from the last 4 bars actually played (so a continuation
keeps the style of what came before).

Examples
--------
>>> rt = load_events("models/events.pt")                                 # doctest: +SKIP
>>> s = EventSampler(rt, seed=0); s.feed(0, 1 | 4, [1, -1, 1] + [-1] * 6)  # doctest: +SKIP
>>> s.sample()                                                           # doctest: +SKIP
(2, 4, array([-1, -1,  1, -1, -1, -1, -1, -1, -1]))
"""
from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np

from rolypoly.errors import ModelError
from rolypoly.free import encode as enc
from rolypoly.score.drums import N_DRUMS

#: The knobs' range and the sampling settings' limits (checked wherever they are set).
MAX_TEMPERATURE = 5.0
_BITS = 1 << np.arange(N_DRUMS)
_MASKS = np.arange(enc.N_MASKS)
_HAS = ((_MASKS[:, None] >> np.arange(N_DRUMS)[None, :]) & 1).astype(np.float64)   # (512, 9): drum d in mask m


class EventRuntime:
    """A loaded event model: ``module``, ``version``, ``layout`` (velocity centres, style quantiles...)."""

    def __init__(self, module, path: Path, threads: int = 1):
        self.module, self.path, self.threads = module, path, threads
        self.version = str(getattr(module, "version", "") or f"unversioned ({path.name})")
        try:
            self.layout = json.loads(str(getattr(module, "layout_json", "") or "{}"))
        except ValueError:
            raise ModelError(f"{path}: layout_json is not valid JSON") from None
        for key, want in (("steps", enc.STEPS), ("max_delta", enc.MAX_DELTA), ("n_feat", enc.N_FEAT)):
            if int(self.layout.get(key, want)) != want:
                raise ModelError(f"{path}: layout {key}={self.layout.get(key)} but rolypoly needs {want}")
        self.n_layers, self.hidden = int(module.n_layers), int(module.hidden)
        self.joint = hasattr(module, "vels")   # joint drum head: combination logits, then classes given it
        self.n_drum_out = enc.N_MASKS if self.joint else enc.N_DRUM_OUT
        self.vel_centers = np.asarray(self.layout.get("vel_centers", [list(enc.VEL_CENTERS)] * N_DRUMS), np.float64)
        vq = self.layout.get("vel_quantiles")
        self.vel_quantiles = None if vq is None else np.asarray(vq, np.float64)
        q = self.layout.get("style_quantiles") or {"q": [0, 1], "density": [0, 1], "complexity": [0, 1]}
        self._q = (np.asarray(q["q"]), np.asarray(q["density"]), np.asarray(q["complexity"]))

    def knob_to_style(self, density: float, complexity: float) -> np.ndarray:
        """Knob values in [0, 1] to the style code (quantiles of the training data)."""
        q, d, c = self._q
        return np.array([np.interp(density, q, d), np.interp(complexity, q, c)])

    def velocities(self, ev: enc.Events, rng: np.random.Generator, own: np.ndarray | None = None) -> np.ndarray:
        """(E, 9) velocities of events: each hit drawn within its class from quantiles.

        The quantiles are ``own`` (9 x 3 x n, NaN where unknown: the velocities of the music
        being continued, see :func:`velocity_table`) where known, else GMD train's; without
        quantiles in the model file a hit gets its class's typical velocity.
        """
        out = np.zeros((len(ev), N_DRUMS), dtype=np.int16)
        rows, drums = np.nonzero(ev.vcls >= 0)
        cls = ev.vcls[rows, drums]
        table = self.vel_quantiles
        if table is None:
            table = np.repeat(self.vel_centers[:, :, None], 11, axis=2)
        if own is not None and own.shape == table.shape:
            table = np.where(np.isnan(own), table, own)
        n = table.shape[-1]
        u = rng.random(len(rows)) * (n - 1)
        lo = np.floor(u).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        q = table[drums, cls]
        v = q[np.arange(len(rows)), lo] * (1 - (u - lo)) + q[np.arange(len(rows)), hi] * (u - lo)
        out[rows, drums] = np.clip(np.rint(v), 1, 127)
        return out

    def initial_state(self):
        import torch
        return torch.zeros(self.n_layers, 1, self.hidden)

    def run(self, x: np.ndarray, h):
        """Feed ``(T, N_FEAT)`` inputs: ``(gap logits of the last (32,), last output, new state)``."""
        import torch
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            g, out, h = self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None], h)
        return g[0, -1].numpy().astype(np.float64), out[:, -1:], h

    def drums(self, out, query: np.ndarray) -> np.ndarray:
        """Drum-head logits for the last output and a next-position query: ``(512,)`` joint, ``(36,)`` independent."""
        import torch
        with torch.inference_mode():
            y = self.module.drums(out, torch.from_numpy(query)[None, None])
        return y[0, 0].numpy().astype(np.float64)

    def vels(self, out, query: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """Joint model: velocity-class logits ``(9, 3)`` given the drums that sound (``bits`` (9,) 0/1)."""
        import torch
        with torch.inference_mode():
            y = self.module.vels(out, torch.from_numpy(query)[None, None],
                                 torch.from_numpy(np.asarray(bits, np.float32))[None, None])
        return y[0, 0].numpy().astype(np.float64).reshape(N_DRUMS, enc.N_VEL)


def velocity_table(vel: np.ndarray, n: int = 11, min_hits: int = 4) -> np.ndarray:
    """(9, 3, n) quantiles of the velocities ``vel (N, 9)`` per drum and class; NaN with fewer than ``min_hits``.

    >>> t = velocity_table(np.array([[40] + [0] * 8] * 4 + [[100] + [0] * 8]))
    >>> float(t[0, 0, 0]), bool(np.isnan(t[0, 2, 0]))
    (40.0, True)
    """
    vel = np.asarray(vel)
    cls = enc.vel_class(vel)
    out = np.full((N_DRUMS, enc.N_VEL, n), np.nan)
    qs = np.linspace(0, 1, n)
    for d in range(N_DRUMS):
        for c in range(enc.N_VEL):
            sel = cls[:, d] == c
            if sel.sum() >= min_hits:
                out[d, c] = np.quantile(vel[sel, d], qs)
    return out


def load_events(path, threads: int = 1) -> EventRuntime:
    """Load a TorchScript event model and check that it runs.

    Raises
    ------
    ModelError
        Missing, not TorchScript, or not an event model.
    """
    import torch

    from rolypoly.model.export import is_torchscript
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: event model not found (train one: rolypoly pretrain model=events, "
                         f"then rolypoly free export)")
    if not is_torchscript(path):
        raise ModelError(f"{path}: not a TorchScript file")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 -- truncated archives surface as many exception types
        raise ModelError(f"{path}: cannot load TorchScript ({type(exc).__name__})") from None
    module.eval()
    if not hasattr(module, "drums") or not hasattr(module, "n_layers"):
        raise ModelError(f"{path}: not an event model (it has no drums() method); is it a performance model?")
    rt = EventRuntime(module, path, threads)
    try:
        g, out, _ = rt.run(np.zeros((1, enc.N_FEAT), np.float32), rt.initial_state())
        y = rt.drums(out, np.zeros(enc.STEPS + enc.MAX_DELTA, np.float32))
        if rt.joint:
            y = np.concatenate([y, rt.vels(out, np.zeros(enc.STEPS + enc.MAX_DELTA, np.float32), np.ones(N_DRUMS)).ravel()])
    except Exception as exc:  # noqa: BLE001 -- any failure of a foreign module means "not usable"
        raise ModelError(f"{path}: event model forward failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    want = enc.N_MASKS + N_DRUMS * enc.N_VEL if rt.joint else enc.N_DRUM_OUT
    if g.shape != (enc.MAX_DELTA,) or y.shape != (want,) or not (np.isfinite(g).all() and np.isfinite(y).all()):
        raise ModelError(f"{path}: event model outputs have the wrong shape or are not finite")
    return rt


def check_sampling(temperature, generate_vels, density, complexity, drum_temperature=None, vel_temperature=None,
                   loop_temperature=None) -> None:
    """Validate sampling settings (raises :class:`ModelError` naming the bad one)."""
    for name, t in (("temperature", temperature), ("drum_temperature", drum_temperature),
                    ("vel_temperature", vel_temperature), ("loop_temperature", loop_temperature)):
        if t is not None and not (0.05 <= float(t) <= MAX_TEMPERATURE):
            raise ModelError(f"{name} {t} must be in [0.05, {MAX_TEMPERATURE}]")
    lo, hi = generate_vels
    if not (0.0 <= lo <= hi <= 1.0):
        raise ModelError(f"generate_vels ({lo}, {hi}) must satisfy 0 <= lo <= hi <= 1")
    for name, v in (("density", density), ("complexity", complexity)):
        if v is not None and not (0.0 <= float(v) <= 1.0):
            raise ModelError(f"{name} {v} must be in [0, 1] (or None: follow what was played)")


class EventSampler:
    """Incremental state over played events plus the sampling rules (see module docs).

    Parameters
    ----------
    runtime : EventRuntime
    temperature : sharpness of the gap draw, and of the others unless set (1 = the model's own distribution)
    drum_temperature, vel_temperature : sharpness of the drums' and velocity classes' draws (None: ``temperature``)
    generate_vels : (lo, hi) window on drum probabilities
    density, complexity : knobs in [0, 1], or None to follow the last 4 bars played
    seed : seed of the sampler's random generator
    """

    def __init__(self, runtime: EventRuntime, temperature: float = 1.0, generate_vels=(0.1, 1.0),
                 density: float | None = None, complexity: float | None = None, seed: int | None = None,
                 drum_temperature: float | None = None, vel_temperature: float | None = None,
                 loop_temperature: float | None = None):
        check_sampling(temperature, generate_vels, density, complexity, drum_temperature, vel_temperature, loop_temperature)
        self.loop_temperature = None if loop_temperature is None else float(loop_temperature)
        self.repeats = 0.0   # share of repeated bars before the style was frozen (see freeze_style)
        self.rt = runtime
        self.temperature = float(temperature)
        self.drum_temperature = self.temperature if drum_temperature is None else float(drum_temperature)
        self.vel_temperature = self.temperature if vel_temperature is None else float(vel_temperature)
        self.generate_vels = (float(generate_vels[0]), float(generate_vels[1]))
        self.density, self.complexity = density, complexity
        self.rng = np.random.default_rng(seed)
        self.h = runtime.initial_state()
        self.out = None
        self.gap_logits = None
        self.last_step: int | None = None
        self._frozen: np.ndarray | None = None
        self._hist_step: list[int] = []
        self._hist_mask: list[int] = []
        self._hist_vcls: list[np.ndarray] = []

    # -- state -------------------------------------------------------------------------
    def freeze_style(self, at_step: int) -> np.ndarray:
        """Hold the style code in force at ``at_step`` from now on (see :meth:`style`)."""
        self._frozen = None
        self._frozen = self.style(at_step)
        self.repeats = self.repetition(at_step)
        return self._frozen

    def thaw_style(self) -> None:
        """Measure the style on what was played again (undo :meth:`freeze_style`)."""
        self._frozen = None
        self.repeats = 0.0

    def repetition(self, at_step: int) -> float:
        """Share of consecutive bar pairs, among the 4 bars before ``at_step``, that are the same (step, drums) pattern.

        A drummer who loops a bar plays it again with little variation: with ``loop_temperature``
        set, the gap and drum draws are that much colder (:meth:`_temperatures`).
        """
        S = enc.STEPS
        b1 = at_step // S
        b0 = b1 - enc.STYLE_BARS
        a = np.asarray(self._hist_step[-512:], dtype=np.int64)
        m = np.asarray(self._hist_mask[-512:], dtype=np.int64)
        bars = [set(zip((a[(a // S) == b] % S).tolist(), m[(a // S) == b].tolist())) for b in range(b0, b1)]
        pairs = [(x, y) for x, y in pairwise(bars) if x or y]
        return sum(x == y for x, y in pairs) / len(pairs) if pairs else 0.0

    def _temperatures(self) -> tuple[float, float]:
        """(gap, drum) temperatures in force: cooled towards ``loop_temperature`` by the repeats measured."""
        if self.loop_temperature is None or self.repeats <= 0:
            return self.temperature, self.drum_temperature
        r = self.repeats
        return (self.temperature + r * (self.loop_temperature - self.temperature),
                self.drum_temperature + r * (self.loop_temperature - self.drum_temperature))

    def style(self, at_step: int) -> np.ndarray:
        """The style code in force at ``at_step``: the knobs, or the 4 bars played before it.

        Once frozen (:meth:`freeze_style`) it stays: measuring what the model itself just
        played would let a slightly busier bar make the next one busier still.
        """
        if self._frozen is not None:
            return self._frozen.copy()
        measured = None
        if self.density is None or self.complexity is None:
            lo = at_step - enc.STYLE_BARS * enc.STEPS
            a = np.asarray(self._hist_step[-512:], dtype=np.int64)
            keep = a >= lo
            ev = enc.Events(a[keep], np.asarray(self._hist_mask[-512:], np.int64)[keep],
                            np.asarray(self._hist_vcls[-512:], np.int64).reshape(-1, N_DRUMS)[keep])
            older = np.asarray(self._hist_step, dtype=np.int64)
            if len(older) and older[0] <= at_step - enc.STEPS:  # at least a bar heard: measure it
                first = int(ev.abs_step[0]) if len(ev) else at_step
                measured = enc.style_of(ev, max(lo, first - first % enc.STEPS), at_step)
        knob = self.rt.knob_to_style(0.5 if self.density is None else float(self.density),
                                     0.5 if self.complexity is None else float(self.complexity))
        if measured is not None:
            if self.density is None:
                knob[0] = measured[0]
            if self.complexity is None:
                knob[1] = measured[1]
        return knob

    def feed(self, abs_step: int, mask: int, vcls) -> None:
        """Tell the model an event was played (score, musician-driven or generated)."""
        abs_step, mask = int(abs_step), int(mask)
        if mask <= 0 or mask >= (1 << N_DRUMS):
            raise ModelError(f"event mask {mask} must name at least one of the 9 drums")
        if self.last_step is not None and abs_step <= self.last_step:
            raise ModelError(f"events must move forward: step {abs_step} after {self.last_step}")
        vcls = np.asarray(vcls, dtype=np.int64).reshape(N_DRUMS)
        ev = enc.Events(np.array([abs_step]), np.array([mask]), vcls[None])
        gap = None if self.last_step is None else abs_step - self.last_step
        self._hist_step.append(abs_step); self._hist_mask.append(mask); self._hist_vcls.append(vcls)
        x = enc.encode_events(ev, self.style(abs_step)[None], first_gap=gap)
        self.gap_logits, self.out, self.h = self.rt.run(x, self.h)
        self.last_step = abs_step

    def feed_events(self, ev: enc.Events) -> None:
        for i in range(len(ev)):
            self.feed(int(ev.abs_step[i]), int(ev.mask[i]), ev.vcls[i])

    # -- drawing -----------------------------------------------------------------------
    def _softmax(self, logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
        z = logits / (self.temperature if temperature is None else temperature)
        z = z - z.max()
        p = np.exp(z)
        return p / p.sum()

    def sample(self, min_step: int | None = None, max_step: int | None = None, feed: bool = True):
        """Draw the next event ``(abs_step, mask, vcls (9,))`` and (by default) feed it back.

        ``min_step``/``max_step`` restrict where it may land (inclusive); None when no
        position in that range is possible.
        """
        if self.last_step is None:
            raise ModelError("the sampler needs at least one event played before it can continue")
        gaps = np.arange(1, enc.MAX_DELTA + 1)
        land = self.last_step + gaps
        ok = np.ones(enc.MAX_DELTA, dtype=bool)
        if min_step is not None:
            ok &= land >= min_step
        if max_step is not None:
            ok &= land <= max_step
        if not ok.any():
            return None
        t_gap, t_drum = self._temperatures()
        p = self._softmax(np.where(ok, self.gap_logits, -np.inf), t_gap)
        gap = int(self.rng.choice(gaps, p=p))
        query = enc.next_query(self.last_step, gap)
        y = self.rt.drums(self.out, query)
        if self.rt.joint:
            mask = self._draw_combination(y, t_drum)
            play = ((mask >> np.arange(N_DRUMS)) & 1).astype(bool)
            vl = self.rt.vels(self.out, query, play.astype(np.float32))
        else:
            prob = 1.0 / (1.0 + np.exp(-y[:N_DRUMS] / t_drum))
            lo, hi = self.generate_vels
            u = self.rng.random(N_DRUMS)
            play = (prob >= lo) & ((prob >= hi) | (u < prob))
            if not play.any():
                play[int(np.argmax(prob))] = True
            mask = int((play * (1 << np.arange(N_DRUMS))).sum())
            vl = y[N_DRUMS:].reshape(N_DRUMS, enc.N_VEL)
        vcls = np.full(N_DRUMS, -1, dtype=np.int64)
        for d in np.nonzero(play)[0]:
            vcls[d] = int(self.rng.choice(enc.N_VEL, p=self._softmax(vl[d], self.vel_temperature)))
        step = self.last_step + gap
        if feed:
            self.feed(step, mask, vcls)
        return step, mask, vcls

    def _draw_combination(self, logits: np.ndarray, temperature: float) -> int:
        """One drum combination (mask 1..511) from joint logits, within the ``generate_vels`` window."""
        logits = logits.copy()
        logits[0] = -np.inf                                   # an event sounds at least one drum
        p = self._softmax(logits, temperature)
        masks = _MASKS
        marginal = p @ _HAS
        lo, hi = self.generate_vels
        forced = int((marginal >= hi) @ _BITS)
        banned = int((marginal < lo) @ _BITS)
        ok = (masks > 0) & ((masks & banned) == 0) & ((masks & forced) == forced)
        if not ok.any():   # the window rules out every combination: the forced drums, else the likeliest drum
            return forced if forced else 1 << int(np.argmax(marginal))
        w = np.where(ok, p, 0.0)
        if w.sum() <= 0:
            return int(masks[ok][0])
        return int(self.rng.choice(enc.N_MASKS, p=w / w.sum()))

    def generate_until(self, end_step: int, min_step: int | None = None, max_events: int = 100000) -> enc.Events:
        """Events drawn one by one while they land before ``end_step`` (the last draw past it is not fed).

        With ``min_step`` the first event must land in ``[min_step, end_step)`` (a fill always plays).
        """
        steps, masks, vcls = [], [], []
        first = True
        while len(steps) < max_events:
            got = self.sample(min_step=min_step if first else None,
                              max_step=end_step - 1 if first and min_step is not None else None, feed=False)
            first = False
            if got is None or got[0] >= end_step:
                break
            self.feed(*got)
            steps.append(got[0]); masks.append(got[1]); vcls.append(got[2])
        return enc.Events(np.asarray(steps, np.int64), np.asarray(masks, np.int64),
                          np.asarray(vcls, np.int64).reshape(-1, N_DRUMS))
