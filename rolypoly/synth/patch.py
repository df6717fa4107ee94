"""A drum patch: the parameters of one supertonic voice, validated, and morphing.

Names follow Microtonic's parameter names (ms for times, Hz for frequencies, dB for
levels).  Out-of-range values are clamped with a warning; NaN, unknown names
and meaningless values (a wave that is not 0/1/2) are :class:`SynthError`.

Examples
--------
>>> p = Patch.from_dict({"oscFreq": 55, "oscDcy": 400, "mix": 90})
>>> p.oscFreq
55.0
>>> q = morph(p, Patch(oscFreq=220.0), 0.5)
>>> round(q.oscFreq)      # exponential for Hz: the geometric mean
110
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields

import numpy as np

from rolypoly.errors import SynthError
from rolypoly.synth.voice import PARAM_NAMES

# name -> (low, high, kind); kind: "choice<N>", "hz", "ms", "lin", "db"
SPECS: dict[str, tuple[float, float, str]] = {
    "oscWave": (0, 2, "choice"), "oscFreq": (1.0, 24000.0, "hz"), "oscAtk": (0.0, 20000.0, "ms"),
    "oscDcy": (0.0, 20000.0, "ms"), "modMode": (0, 2, "choice"), "modRate": (0.0, 24000.0, "hz"),
    "modAmt": (-96.0, 96.0, "lin"), "nFilMod": (0, 2, "choice"), "nFilFrq": (1.0, 24000.0, "hz"),
    "nFilQ": (0.01, 10000.0, "hz"), "nStereo": (0, 1, "choice"), "nEnvMod": (0, 2, "choice"),
    "nEnvAtk": (0.0, 20000.0, "ms"), "nEnvDcy": (0.0, 20000.0, "ms"), "mix": (0.0, 100.0, "lin"),
    "distAmt": (0.0, 100.0, "lin"), "eQFreq": (1.0, 24000.0, "hz"), "eQGain": (-40.0, 40.0, "lin"),
    "level": (-math.inf, 24.0, "db"), "oscVel": (0.0, 200.0, "lin"), "nVel": (0.0, 200.0, "lin"),
    "modVel": (0.0, 200.0, "lin"),
}


@dataclass
class Patch:
    """One voice's parameters (defaults: a plain, short sine-and-noise tom-ish hit)."""

    oscWave: int = 0
    oscFreq: float = 110.0
    oscAtk: float = 0.0
    oscDcy: float = 300.0
    modMode: int = 0
    modRate: float = 10.0
    modAmt: float = 12.0
    nFilMod: int = 0
    nFilFrq: float = 2000.0
    nFilQ: float = 0.707
    nStereo: int = 0
    nEnvMod: int = 0
    nEnvAtk: float = 0.0
    nEnvDcy: float = 100.0
    mix: float = 75.0
    distAmt: float = 10.0
    eQFreq: float = 1000.0
    eQGain: float = 0.0
    level: float = 0.0
    oscVel: float = 50.0
    nVel: float = 50.0
    modVel: float = 50.0
    name: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "patch") -> "Patch":
        """Check types and ranges in place (clamps with a warning; raises on NaN/nonsense)."""
        for key, (lo, hi, kind) in SPECS.items():
            raw = getattr(self, key)
            if isinstance(raw, bool):
                raw = int(raw)
            try:
                val = float(raw)
            except (TypeError, ValueError):
                raise SynthError(f"{where}: {key} = {raw!r} is not a number") from None
            if math.isnan(val):
                raise SynthError(f"{where}: {key} is NaN")
            if kind == "choice":
                if val != int(val) or not lo <= val <= hi:
                    raise SynthError(f"{where}: {key} = {raw!r} must be an integer {int(lo)}..{int(hi)}")
                setattr(self, key, int(val))
                continue
            if kind == "db" and val == -math.inf:
                setattr(self, key, val)
                continue
            if not lo <= val <= hi:
                clamped = min(max(val, lo), hi)
                warnings.warn(f"{where}: {key} = {val:g} out of range [{lo:g}, {hi:g}], clamped to {clamped:g}",
                              stacklevel=3)
                val = clamped
            setattr(self, key, val)
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "patch") -> "Patch":
        """Build from a mapping of parameter names (unknown names are an error)."""
        if not isinstance(d, dict):
            raise SynthError(f"{where}: a patch must be a table of parameters, got {type(d).__name__}")
        known = set(SPECS) | {"name"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SynthError(f"{where}: unknown parameter(s) {', '.join(unknown)} "
                             f"(known: {', '.join(PARAM_NAMES)})")
        p = cls.__new__(cls)
        for f in fields(cls):
            setattr(p, f.name, d.get(f.name, f.default))
        p.name = str(p.name)
        return p.validate(where)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_array(self) -> np.ndarray:
        """The float64 vector the DSP kernels take (PARAM_NAMES order)."""
        return np.array([float(getattr(self, k)) for k in PARAM_NAMES], np.float64)


def morph(a: Patch, b: Patch, t: float) -> Patch:
    """Patch between ``a`` (t=0) and ``b`` (t=1).

    Continuous parameters are interpolated (exponentially for Hz and ms, so a
    sweep sounds even; linearly otherwise); choices switch at t = 0.5.
    """
    t = float(t)
    if math.isnan(t) or not 0.0 <= t <= 1.0:
        raise SynthError(f"morph position {t} must be within 0..1")
    out = {}
    for key, (lo, hi, kind) in SPECS.items():
        x, y = float(getattr(a, key)), float(getattr(b, key))
        if kind == "choice":
            out[key] = int(y if t >= 0.5 else x)
        elif kind in ("hz", "ms"):
            off = 1.0 if kind == "ms" or lo <= 0 else 0.0   # ms and 0-capable rates may be 0
            out[key] = math.exp((1 - t) * math.log(x + off) + t * math.log(y + off)) - off
        elif kind == "db":
            x, y = max(x, -120.0), max(y, -120.0)
            out[key] = (1 - t) * x + t * y
        else:
            out[key] = (1 - t) * x + t * y
    out["name"] = b.name if t >= 0.5 else a.name
    return Patch.from_dict(out, where="morph")
