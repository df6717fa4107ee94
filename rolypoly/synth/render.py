"""Rendering hits with a kit: the streaming :class:`BlockRenderer` and offline :func:`render`.

Both share one voice bank: ``polyphony`` sounding voices plus as many slots for
voices that are fading out (stolen or choked voices fade over ``steal_fade_ms``
instead of clicking).  A hit's first sample lands exactly on
``round(time * sr)``.

Examples
--------
>>> from rolypoly.synth import load_kit
>>> audio = render([(0.0, 0, 100), (0.25, 1, 90)], load_kit(None))
>>> audio.dtype, audio.shape[1]
(dtype('float32'), 2)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from rolypoly.errors import SynthError
from rolypoly.synth.kit import DRUMS, Kit
from rolypoly.synth.voice import (
    C_LENGTH,
    C_OUT_L,
    C_OUT_R,
    N_COEF,
    N_STATE,
    S_DELAY,
    S_FADE,
    S_FADING,
    process_bank,
    start_fade,
    voice_setup,
)


@njit(cache=True, nogil=True, error_model="numpy")
def bank_trigger(coefs, states, active, vgroup, vage, clock, params, pans, groups,
                 drum, vel, offset, sr, poly, fade_samples, seed):
    """Start a voice of class ``drum`` ``offset`` samples into the next block (no allocation).

    Chokes the drum's group, steals the oldest voice past ``poly`` (fading it),
    and returns the slot used.
    """
    n = coefs.shape[0]
    g = groups[drum]
    sounding = 0
    oldest = -1
    for v in range(n):
        if active[v] == 0 or states[v, S_FADING] > 0.5:
            continue
        if g > 0 and vgroup[v] == g:
            start_fade(states, v, offset, fade_samples)
            continue
        sounding += 1
        if oldest < 0 or vage[v] < vage[oldest]:
            oldest = v
    if sounding >= poly and oldest >= 0:
        start_fade(states, oldest, offset, fade_samples)
    slot = -1
    quietest = -1
    for v in range(n):
        if active[v] == 0:
            slot = v
            break
        if quietest < 0 or states[v, S_FADE] < states[quietest, S_FADE]:
            quietest = v
    if slot < 0:       # every slot busy, even the fading ones: reuse the quietest fader
        slot = quietest
    voice_setup(params[drum], vel, sr, seed, coefs[slot], states[slot])
    coefs[slot, C_OUT_L] *= pans[drum, 0]
    coefs[slot, C_OUT_R] *= pans[drum, 1]
    states[slot, S_DELAY] = offset
    active[slot] = 1
    vgroup[slot] = g
    vage[slot] = clock
    return slot


class BlockRenderer:
    """Streaming renderer for the live engine: fixed-size blocks, no allocation per block.

    Parameters
    ----------
    kit : Kit
    sr : int
        Sample rate in Hz.
    block_frames : int
        Frames per :meth:`process` call.
    polyphony : int
        Voices sounding at once; one more steals (fades out) the oldest.
    steal_fade_ms : float
        Fade time of stolen and choked voices.

    Examples
    --------
    >>> r = BlockRenderer(load_kit(None), block_frames=128)     # doctest: +SKIP
    >>> out = np.zeros((128, 2), np.float32)                   # doctest: +SKIP
    >>> r.trigger(17, 0, 110); r.process(out)                  # doctest: +SKIP
    """

    def __init__(self, kit: Kit, sr: int = 48000, block_frames: int = 128, polyphony: int = 16,
                 steal_fade_ms: float = 3.0, seed: int = 1):
        if not isinstance(kit, Kit):
            raise SynthError(f"BlockRenderer needs a Kit, got {type(kit).__name__}")
        if not (8000 <= int(sr) <= 384000):
            raise SynthError(f"sample rate {sr} outside 8000..384000 Hz")
        if int(block_frames) < 1 or int(polyphony) < 1:
            raise SynthError("block_frames and polyphony must be at least 1")
        if not 0.0 < float(steal_fade_ms) <= 100.0:
            raise SynthError(f"steal_fade_ms {steal_fade_ms} outside (0, 100]")
        self.kit = kit
        self.sr = int(sr)
        self.block_frames = int(block_frames)
        self.polyphony = int(polyphony)
        self.fade_samples = max(1, int(round(steal_fade_ms * 1e-3 * self.sr)))
        self.params, self.pans, self.groups = kit.class_arrays()
        slots = 2 * self.polyphony
        self.coefs = np.zeros((slots, N_COEF))
        self.states = np.zeros((slots, N_STATE))
        self.active = np.zeros(slots, np.int64)
        self.vgroup = np.zeros(slots, np.int64)
        self.vage = np.zeros(slots, np.int64)
        self._clock = 0
        self._seed = int(seed)
        self._warm()

    def _warm(self) -> None:
        # compile/load the kernels now, not inside the first audio callback
        out = np.zeros((self.block_frames, 2), np.float32)
        self.trigger(0, 0, 1)
        self.process(out)
        self.reset()

    def reset(self) -> None:
        """Silence every voice at once."""
        self.active[:] = 0
        self.states[:, S_DELAY] = 0.0

    def trigger(self, sample_offset_in_block: int, drum: int, velocity: int, seed: int | None = None) -> None:
        """Start ``drum`` (0..8) at ``velocity`` (1..127), ``sample_offset_in_block`` into the next block.

        ``seed`` fixes the voice's noise (default: the next of the renderer's own sequence).
        """
        if not 0 <= drum < len(DRUMS):
            raise SynthError(f"drum class {drum} outside 0..{len(DRUMS) - 1}")
        if not 1 <= velocity <= 127:
            raise SynthError(f"velocity {velocity} outside 1..127")
        if sample_offset_in_block < 0:
            raise SynthError(f"sample offset {sample_offset_in_block} is negative")
        self._clock += 1
        if seed is None:
            self._seed = (self._seed * 1103515245 + 12345) & 0x7FFFFFFF
            seed = self._seed
        bank_trigger(self.coefs, self.states, self.active, self.vgroup, self.vage, self._clock,
                     self.params, self.pans, self.groups, int(drum), float(velocity),
                     float(sample_offset_in_block), float(self.sr), self.polyphony,
                     float(self.fade_samples), int(seed) & 0x7FFFFFFF)

    def process(self, out: np.ndarray) -> None:
        """Fill ``out`` ((block_frames, 2) float32, preallocated) with the next block, in place."""
        process_bank(self.coefs, self.states, self.active, out)

    @property
    def voices(self) -> int:
        """How many voices are sounding or fading."""
        return int(self.active.sum())


def _hit_seed(start: int, drum: int, vel: int) -> int:
    return (start * 2654435761 + drum * 40503 + vel * 97) & 0x7FFFFFFF


def _check_hits(hits) -> list[tuple[float, int, int]]:
    clean = []
    for i, h in enumerate(hits):
        try:
            t, d, v = h
            t, d, v = float(t), int(d), int(round(float(v)))
        except (TypeError, ValueError):
            raise SynthError(f"hit {i}: {h!r} is not (time_s, drum 0..8, velocity 1..127)") from None
        if not math.isfinite(t) or t < 0:
            raise SynthError(f"hit {i}: time {t} must be a finite number >= 0")
        if not 0 <= d < len(DRUMS):
            raise SynthError(f"hit {i}: drum {d} outside 0..{len(DRUMS) - 1}")
        if not 1 <= v <= 127:
            raise SynthError(f"hit {i}: velocity {v} outside 1..127")
        clean.append((t, d, v))
    clean.sort(key=lambda h: h[0])
    return clean


def render(hits, kit: Kit, sr: int = 48000, tail_s: float | None = None, polyphony: int = 16,
           steal_fade_ms: float = 3.0, block: int = 1024) -> np.ndarray:
    """Render ``hits`` ((time_s, drum 0..8, velocity 1..127), any order) with ``kit``.

    Parameters
    ----------
    tail_s : float, optional
        Audio kept after the last hit; by default until every voice has ended.

    Returns
    -------
    np.ndarray
        (n, 2) float32 in -1..1; each hit's first non-zero sample is at round(time * sr).
    """
    hits = _check_hits(hits)
    r = BlockRenderer(kit, sr=sr, block_frames=block, polyphony=polyphony, steal_fade_ms=steal_fade_ms)
    starts = [int(round(t * sr)) for t, _, _ in hits]
    last = starts[-1] if starts else 0
    if tail_s is not None:
        if not math.isfinite(tail_s) or tail_s < 0:
            raise SynthError(f"tail_s {tail_s} must be >= 0")
        total = last + int(round(tail_s * sr)) + (1 if hits else 0)
    else:
        # the longest voice any hit can make bounds the render; trimmed to the real end below
        c, s = np.zeros(N_COEF), np.zeros(N_STATE)
        longest = 0
        for (t, d, v), st in zip(hits, starts):
            voice_setup(r.params[d], float(v), float(sr), 1, c, s)
            longest = max(longest, st + int(c[C_LENGTH]))
        total = max(longest, 1)
    out = np.zeros((total + block, 2), np.float32)
    k = 0
    pos = 0
    end = 0
    while pos < total:
        while k < len(hits) and starts[k] < pos + block:
            # each hit's noise depends only on the hit, not on what else the score holds
            r.trigger(starts[k] - pos, hits[k][1], hits[k][2], seed=_hit_seed(starts[k], hits[k][1], hits[k][2]))
            k += 1
        r.process(out[pos:pos + block])
        pos += block
        if r.voices:
            end = pos
    if tail_s is None:
        nz = np.flatnonzero(np.abs(out[:end]).max(axis=1) > 0) if end else np.array([], int)
        total = int(nz[-1]) + 1 if len(nz) else total
    return np.ascontiguousarray(out[:total])
