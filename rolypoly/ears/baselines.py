"""Plain aubio onset detectors, kept as baselines behind the listener's interface.

``Listener(sr, hop, method="hfc")`` (or ``complex``, ``specflux``, ...) runs
``aubio.onset`` hop by hop; its own latency estimate (``get_delay_s``) is the
compensation.  The benchmarks score them in the same run as the default detector.

Examples
--------
>>> import numpy as np
>>> det = AubioDetector("hfc", 48000, 128, 1024, silence_db=-70.0, min_ioi_ms=50.0)  # doctest: +SKIP
>>> det.process(np.zeros(512, np.float32))   # doctest: +SKIP
[]
"""
from __future__ import annotations

import numpy as np

from rolypoly.errors import ConfigError

AUBIO_METHODS = ("hfc", "complex", "specflux", "energy", "phase", "specdiff", "kl", "mkl", "wphase")


class AubioDetector:
    """``aubio.onset`` fed hop by hop from blocks of any length (mono float32 in)."""

    def __init__(self, method: str, sr: int, hop: int, n_fft: int, silence_db: float, min_ioi_ms: float,
                 threshold: float | None = None, gain: float = 1.0):
        try:
            import aubio
        except ImportError as exc:
            raise ConfigError(f"listen.method={method} needs aubio, which is not installed ({exc}); "
                              "use method=default") from None
        self.method, self.sr, self.hop, self.n_fft = method, int(sr), int(hop), int(n_fft)
        self._args = (float(silence_db), float(min_ioi_ms), threshold, float(gain))
        self._aubio = aubio
        self.reset()

    def reset(self) -> None:
        silence_db, min_ioi_ms, threshold, _ = self._args
        o = self._aubio.onset(self.method, self.n_fft, self.hop, self.sr)
        o.set_silence(silence_db)
        o.set_minioi_ms(min_ioi_ms)
        if threshold is not None:
            o.set_threshold(float(threshold))
        self._onset = o
        self.latency_s = float(o.get_delay_s())
        self._pending = np.zeros(self.hop, np.float32)
        self._n_pending = 0

    def process(self, x: np.ndarray) -> list[float]:
        """Onset times (s since reset, aubio's latency taken off) found in ``x``."""
        out: list[float] = []
        i, n, hop, o = 0, x.size, self.hop, self._onset
        gain = np.float32(self._args[3])
        while i < n:
            take = min(hop - self._n_pending, n - i)
            self._pending[self._n_pending:self._n_pending + take] = x[i:i + take]
            self._n_pending += take
            i += take
            if self._n_pending == hop:
                self._n_pending = 0
                if o(self._pending * gain):
                    out.append(max(0.0, float(o.get_last_s())))
        return out
