"""Feature layout and model-side scaling, kept in one place.

A model input row has 22 values and an output row 19::

    input  x[:, 0:9]   score velocity / 127            (encoder)
           x[:, 9:18]  realised drum offsets / 0.08     (decoder; 0 for rows not yet played)
           x[:, 18]    (bpm - 40) / 200
           x[:, 19]    tsig (3/4 -> 0.75)
           x[:, 20]    phase in the bar [0, 1)
           x[:, 21]    musician offset tau_g / 0.08     (0 where none)
    output y[:, 0:9]   velocity / 127,  y[:, 9:18] offsets / 0.08,  y[:, 18] musician offset g / 0.08

Offsets are bar fractions, clipped to +-0.5 after scaling (+-0.04 bar).  Row t of the
output is the prediction for row t; the model itself shifts the decoder's history
(offsets and tau_g of row t-1 inform row t), so callers simply pass the rows they know.

Examples
--------
>>> import numpy as np
>>> x = encode_rows(np.full((2, 9), 127.0), np.zeros((2, 9)), [120, 120], [1, 1], [0, .5], [0, 0])
>>> x.shape, float(x[0, 0]), round(float(x[0, 18]), 6)
((2, 22), 1.0, 0.4)
"""
from __future__ import annotations

import numpy as np

from rolypoly.score.drums import N_DRUMS

VEL_SCALE = 127.0
OFF_SCALE = 0.08
OFF_CLIP = 0.5
BPM_SHIFT = 40.0
BPM_SCALE = 200.0

# Column bounds as plain ints: TorchScript takes them as constants where slice objects fail.
VEL0, VEL1 = 0, N_DRUMS
OFF0, OFF1 = N_DRUMS, 2 * N_DRUMS
BPM, TSIG, PHASE, TAU_G = 18, 19, 20, 21
N_IN = 22
VEL = slice(VEL0, VEL1)
OFF = slice(OFF0, OFF1)
CONTEXT = slice(BPM, PHASE + 1)   # bpm, tsig, phase: what the encoder sees besides velocities
OUT_VEL = slice(0, N_DRUMS)
OUT_OFF = slice(N_DRUMS, 2 * N_DRUMS)
OUT_G = 18
N_OUT = 19

#: History window (rows) of a model whose file names none.
DEFAULT_WINDOW = 16

#: Everything a saved model must carry to be understood without this package.
LAYOUT = {
    "inputs": "vel[9]/127, off[9]/0.08 (bar fractions, clip +-0.5), (bpm-40)/200, tsig, phase, tau_g/0.08",
    "outputs": "vel[9]/127, off[9]/0.08, g/0.08",
    "n_in": N_IN, "n_out": N_OUT, "n_drums": N_DRUMS,
    "vel_scale": VEL_SCALE, "off_scale": OFF_SCALE, "off_clip": OFF_CLIP,
    "bpm_shift": BPM_SHIFT, "bpm_scale": BPM_SCALE,
}


def scale_off(off):
    """Bar-fraction offsets to model units (clipped)."""
    return np.clip(np.asarray(off, dtype=np.float64) / OFF_SCALE, -OFF_CLIP, OFF_CLIP)


def unscale_off(x):
    """Model units back to bar fractions."""
    return np.asarray(x, dtype=np.float64) * OFF_SCALE


def encode_rows(vel, off, bpm, tsig, phase, tau_g) -> np.ndarray:
    """Stack row features into a ``(T, 22)`` float32 model input.

    Parameters
    ----------
    vel : (T, 9) score velocities 0-127
    off : (T, 9) realised offsets (bar fractions); zeros for rows not yet played
    bpm, tsig, phase, tau_g : (T,) each
    """
    vel = np.asarray(vel, dtype=np.float64)
    T = vel.shape[0]
    if vel.shape != (T, N_DRUMS):
        raise ValueError(f"vel must be (T, {N_DRUMS}), got {vel.shape}")
    x = np.empty((T, N_IN), dtype=np.float32)
    x[:, VEL] = vel / VEL_SCALE
    x[:, OFF] = scale_off(off)
    x[:, BPM] = (np.asarray(bpm, dtype=np.float64) - BPM_SHIFT) / BPM_SCALE
    x[:, TSIG] = tsig
    x[:, PHASE] = phase
    x[:, TAU_G] = scale_off(tau_g)
    return x


def decode_outputs(y):
    """Split a ``(T, 19)`` model output into (velocities 0-127, offsets and g in bar fractions)."""
    y = np.asarray(y, dtype=np.float64)
    vel = np.clip(y[:, OUT_VEL] * VEL_SCALE, 0.0, 127.0)
    off = np.clip(y[:, OUT_OFF], -OFF_CLIP, OFF_CLIP) * OFF_SCALE
    g = np.clip(y[:, OUT_G], -OFF_CLIP, OFF_CLIP) * OFF_SCALE
    return vel, off, g
