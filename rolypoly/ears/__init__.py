"""The listener: onset detection on the musician's input.

``from rolypoly.ears import Listener, detect_onsets, soundcheck`` works; the names are
loaded on first use, so importing this package stays light (no numba until then).

kernel.py (numba kernel, named state slots) · listener.py (the Listener object) ·
baselines.py (plain aubio) · calibration.py (stored latency, sound check) ·
corpus.py (the FluidSynth development corpus) · network.py (the causal onset network:
front end, incremental runtime, picker; ``listen.method=network``) · train.py (its
leave-one-family-out training)
"""

_EXPORTS = {"Listener": "listener", "detect_onsets": "listener", "DEFAULTS": "listener", "PRESETS": "listener",
            "METHODS": "listener", "soundcheck": "calibration"}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f"rolypoly.ears.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rolypoly.ears' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
