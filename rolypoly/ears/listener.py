"""The listener: streaming, causal onset detection on the musician's input.

The live engine feeds each audio block to :class:`Listener` and gets back the onset
times it found, in seconds since the stream started, with the detector's latency taken
off (the time the note began, not the time it was noticed).

Two families of detector sit behind the one interface:

``method="default"``
    Our conditioned detector, built to hold up on real instruments:

    1. conditioning — non-finite samples become silence (with one warning), channels are
       averaged, a 2nd-order high-pass at ``highpass_hz`` removes DC and rumble;
    2. a log-frequency magnitude spectrum every hop (Hann window of ``buf`` samples,
       ``bands_per_octave`` triangular bands);
    3. level normalisation that follows the input: band magnitudes are divided by a
       slowly released peak level of the recent input before the log, so a quiet player
       produces the same detection function as a loud one (never amplified beyond the
       ``silence_db`` floor, so silence stays silent);
    4. a SuperFlux-style spectral flux: positive log-magnitude differences against the
       spectrum ``lag`` hops back, max-filtered across ``max_bands`` bands either side
       (24 bands per octave: a vibrato or a slide stays inside the filter, a new note
       does not);
    5. causal peak picking: an onset fires on the first hop whose flux exceeds
       ``threshold`` plus the mean of the last ``avg_ms`` and is the largest of the last
       ``max_ms``; then nothing for ``min_ioi_ms``, and nothing until the flux has fallen
       under ``rearm`` times the peak of that onset (a slow swell is one rise, one onset);
    6. level gates: nothing under ``silence_db`` (absolute), nor more than ``gate_db``
       under the loudest recent playing (key clicks, breath, bleed between notes).  The
       playing level starts at ``player_db`` (the sound check measures it) and is not
       forgotten during silence;
    7. run-ups: an onset more than ``quiet_db`` under the playing is held back (its time
       kept) for up to ``hold_ms`` (only if its band flatness is at least ``hold_flatness``:
       above 0, a more tonal quiet onset is reported at once).  If a note follows — a non-quiet onset more than 30 ms
       later, or the level rising 6 dB over the quiet line and 10 dB over the held onset —
       the held one was breath or a scrape before it and is dropped, unless its band
       flatness was under ``runup_flatness`` (a tonal sound: a soft note of its own, kept)
       or its sound died away ``stroke_decay_db`` under its own peak before the note came
       (a hat or a ghost stroke: kept; breath swells on into the tone); otherwise it is
       reported as it was (a ghost note: exact time, reported late).  A held onset that was
       periodic from then on until its note arrived by swelling (``tonal_swell``) was that
       note's beginning (a slow bow, a soft voice) and dates it.  A note that
       arrives by swelling (no onset of its own) is dated where the pitch tracker
       found it periodic, less half its window, when that is recent (a tone swelling
       out of breath starts with the tone, not where it got loud);
    8. dips: a note rising out of a level dip inside a tone (the band spectrum's flatness
       under 0.4 at the bottom, a louder sound before it, 6 dB of rise) is dated at the
       bottom of the dip, at most ``dip_ms`` back: a tongued or re-articulated wind note
       starts there, not where the flux noticed its swell.

    9. the slur cue (``slur=True``; off in the ``percussion`` preset) for notes with no
       attack at all: a YIN pitch track (``pitch_window_ms`` window on the input
       low-passed and decimated to about 8 kHz) gives a periodicity and a pitch every
       hop; an onset fires where a steady pitch steps to another steady pitch by
       ``slur_semitones`` or more (15 ms of each, 25 ms apart; the old note steady for
       25 ms more and the new one holding for 15 ms more, so a vibrato, a bend or a
       drum's falling pitch does not count; octave slips of the tracker do not; the new
       note must be at playing level).  It is dated where the pitch had moved a quarter
       of the way, so it is exact but reported about 60 ms late;
    10. optionally (``tonal=True``; on in the ``voice`` preset) the voicing cue: an onset
       where periodic sound starts after ``periodicity < 0.5`` for 20 ms (a blown or sung
       tone out of breath noise), dated back to where the change entered the window.
       A flux onset and a pitch onset closer than ``tonal_merge_ms`` (or ``min_ioi_ms``)
       are one note: whichever was reported first stands.

    The whole chain runs in one numba kernel per block (a radix-2 real FFT included), so
    a 128-frame block costs one call and a 4096-frame block no more per frame; any split
    of the stream into blocks gives the same onsets.

    11. attack dating (``attack_dating``): a flux onset is dated by its own attack, not by
       one latency.  At the detection hop the analysis frame (21 ms) is looked at as a
       1 ms level every 8 samples: from its quietest point (the floor) to the loudest
       after it the level must rise ``attack_rise_db``, and nothing before the rise may
       come within ``attack_before_db`` of that peak (a low tone's own ripple); the onset
       is where the level last crossed the larger of ``attack_floor_db`` over the floor
       and ``attack_peak_db`` under the peak, plus a small calibrated shift.  Without
       such an attack, a level still climbing over the frame (``attack_swell_db``) is a
       slow swell: the fixed latency plus a calibrated extra; anything else keeps the
       fixed latency.  Both constants are fitted on the corpus and the virtual plucks
       (:func:`rolypoly.ears.calibration.attack_dating_fit`), stored in ``latency.json``.

    Otherwise the reported time is the detection time minus :attr:`Listener.latency_s`, a
    stored property of the analysis structure (:mod:`rolypoly.ears.calibration`).

    The settings (:data:`DEFAULTS`) were chosen by leave-one-instrument-family-out
    validation on the development corpus (``rolypoly bench onsets --corpus``).

Bad input never stops the listener: non-finite samples are silence, integer samples are
scaled, any channel count is averaged (none is silence), and one warning each says so,
or that the input is clipping, has a DC offset, has been silent for 10 s, or is steady
noise; more than :data:`STORM_PER_S` onsets a second are dropped (with a warning), so a
broken input cannot drag the drums around.

``method="network"``
    The small causal onset network (:mod:`rolypoly.ears.network`, ``models/onsets.pt``):
    log-mel frames every 2.7 ms, dilated causal convolutions, at most 10 ms of
    look-ahead in its training target, run incrementally in numpy on the reader thread.
    Its threshold, re-arm and latency are stored with the model; ``gain_db``,
    ``silence_db`` and (when given) ``min_ioi_ms`` apply to it too.

``method="hfc" | "complex" | "specflux" | "energy" | "phase" | "specdiff" | "kl" | "mkl"``
    Plain aubio (``aubio.onset``, :mod:`rolypoly.ears.baselines`), kept as a baseline;
    its own latency estimate (``get_delay_s``) is the compensation.

The room: :mod:`~rolypoly.ears.kernel` (the numba kernel and its named state slots),
this module (the listener object), :mod:`~rolypoly.ears.baselines` (aubio),
:mod:`~rolypoly.ears.calibration` (latency, the sound check),
:mod:`~rolypoly.ears.corpus` (the development corpus).

Examples
--------
>>> import numpy as np
>>> from rolypoly.ears.listener import Listener
>>> lis = Listener(sr=48000, hop=128)
>>> x = np.zeros(48000, np.float32); x[24000:24100] = 0.5
>>> found = []
>>> for i in range(0, x.size, 128):
...     found += lis.process(x[i:i + 128])
>>> [round(t, 2) for t in found]   # doctest: +SKIP
[0.5]
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from rolypoly.ears import kernel as K
from rolypoly.ears.baselines import AUBIO_METHODS, AubioDetector
from rolypoly.errors import AudioError, ConfigError

METHODS = ("default", "network") + AUBIO_METHODS

# Settings of the default detector.  Sound-check presets start from these.
DEFAULTS = dict(
    method="default",
    buf=1024,            # analysis window in samples at 48 kHz (scaled with sr)
    threshold=0.1,       # flux above the running mean needed for an onset (chosen leaving one family out)
    silence_db=-70.0,    # below this input level nothing is an onset
    min_ioi_ms=50.0,     # shortest time between two onsets
    latency_ms=None,     # None: measured; a number: forced compensation
    highpass_hz=30.0,    # DC and rumble removal
    gain_db=0.0,         # input trim before the detector (sound check sets it)
    bands_per_octave=24, # SuperFlux resolution: a vibrato stays inside the max filter
    fmin=40.0,
    fmax=16000.0,
    lag=4,               # hops between compared spectra
    compression=1000.0,  # lambda in log(1 + lambda * normalised magnitude)
    release_s=3.0,       # level follower: time for the tracked peak to fall 60 dB
    avg_ms=60.0,         # adaptive threshold: running mean over this past
    max_ms=30.0,         # the detection must be the largest flux over this past
    ref_frames=3,        # reference spectrum: max over this many frames, lag hops back
    max_bands=1,         # vibrato suppression: reference is the max over +-this many bands
    rearm=0.5,           # after an onset, re-arm once the flux falls under this share of its peak
    gate_db=35.0,        # relative gate: ignore input this far under the recent playing level
    gate_release_s=10.0, # the relative gate's level follower: time to fall 60 dB
    player_db=-30.0,     # expected playing level (dBFS RMS) before any is heard (sound check sets it)
    quiet_db=12.0,       # an onset this far under the recent playing is held back ...
    hold_ms=200.0,       # ... this long: if a note follows, it was breath or a scrape (0: off)
    hold_flatness=0.2,   # ... if its band flatness is at least this (breath, a scrape: noise); a more tonal one is reported at once
    runup_flatness=0.4,  # ... unless its band flatness is under this (tonal: a soft note of its own)
    tonal_swell=True,    # ... or it was periodic from then on (a slow bow or soft voice swelling into its note)
    stroke_decay_db=6.0, # ... or its sound fell this far under its peak before the note came (a stroke; 0: off)
    attack_dating=True,  # date each flux onset where its own attack rose (else: by the fixed latency)
    attack_window_ms=1.0,  # ... judged on the level over this window (as the corpus truth is)
    attack_rise_db=10.0, # ... when that level rose this much over the frame's floor
    attack_floor_db=4.0, # ... from where it crossed this far over the floor
    attack_peak_db=30.0, # ... or this far under the peak so far, whichever is higher
    attack_before_db=3.0,  # ... and nothing before the rise came within this of its peak (a tone's ripple)
    attack_shift_ms=None,  # ... plus this (None: calibrated, latency.json)
    attack_slow_ms=None,   # no clear attack but a rising level (a slow swell): the fixed latency plus this (None: calibrated)
    attack_swell_db=0.5,   # ... the rise over the frame that counts as rising (0: any)
    dip_ms=80.0,         # an onset rising out of a level dip is dated at its bottom, this far back at most
    slur=True,           # the slur cue: a steady pitch stepping to another steady pitch is a note
    slur_semitones=0.6,  # ... when it moves this far (a vibrato is not steady, a glide neither)
    tonal=False,         # the voicing cue: onsets where a tone starts out of breath noise
                         # (on for voice; off by default: real drums' ringing fools it)
    voicing=0.75,        # periodicity (1 - YIN aperiodicity) that counts as a tone
    pitch_window_ms=40.0,  # the pitch tracker's analysis window
    pitch_fmin=70.0,     # lowest pitch the tonal cue follows (Hz)
    tonal_merge_ms=60.0, # a tonal and a flux onset closer than this are one note
    model=None,          # method="network": the exported model (None: models/onsets.pt)
    net_threshold=None,  # method="network": onset probability that fires (None: the model's own)
)

# Settings older takes may carry that no longer mean anything; accepted and ignored.
_RETIRED = ("floor_rise_db", "floor_weight")

# Instrument presets: starting points a sound check refines.
PRESETS = {
    "guitar": dict(),
    "bass": dict(highpass_hz=25.0, fmin=30.0),
    "keys": dict(),
    "voice": dict(threshold=0.2, min_ioi_ms=60.0, tonal=True),
    # breath noise between notes: the threshold the listener had before the corpus chose 0.1
    "wind": dict(threshold=0.15),
    # no breath before a stroke: a quiet hit before a loud one is a hit (hats, ghost notes)
    "percussion": dict(min_ioi_ms=30.0, slur=False, hold_ms=0.0),
}



def _warn_default(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


# what counts as misbehaving input (checked per block from the kernel's own state)
SILENT_WARN_S = 10.0      # input under the silence floor this long: muted or disconnected?
NOISE_WARN_S = 5.0        # level over the floor, flat spectrum, (almost) no onsets this long
NOISE_FLATNESS = 0.5      # band flatness above this is noise (a tone or a drum stroke is lower)
STORM_PER_S = 15.0        # more onsets a second than this over STORM_S is a storm, not playing
STORM_S = 2.0


class Listener:
    """Streaming onset detector; feed it blocks, get onset times back.

    Parameters
    ----------
    sr : int
        Sample rate of the input.
    hop : int
        Analysis hop in samples (128 at 48 kHz gives an onset decision every 2.7 ms).
    on_warning : callable, optional
        Called with a message the first time the input misbehaves (NaN/inf, clipping,
        DC, silence, steady noise, an onset storm); default: :func:`warnings.warn`.
    **settings
        Any key of :data:`DEFAULTS` (``method``, ``threshold``, ``min_ioi_ms`` ...), and
        ``instrument`` to start from a preset.

    Attributes
    ----------
    latency_s : float
        Subtracted from each detection time.
    settings : dict
        Everything needed to rebuild this listener (saved with each take).

    Examples
    --------
    >>> lis = Listener(48000, 128, threshold=0.4)
    >>> lis.process(np.zeros(256, np.float32))
    []
    """

    def __init__(self, sr: int = 48000, hop: int = 128, on_warning: Callable[[str], None] | None = None,
                 **settings):
        instrument = settings.pop("instrument", None)
        merged = dict(DEFAULTS)
        if instrument is not None:
            if instrument not in PRESETS:
                raise ConfigError(f"listen.instrument: unknown preset {instrument!r}; "
                                  f"choose one of {', '.join(PRESETS)}")
            merged.update(PRESETS[instrument])
        for key in _RETIRED:
            settings.pop(key, None)
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"listen: unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        merged.update({k: v for k, v in settings.items() if v is not None or k == "latency_ms"})
        self.sr = int(sr)
        self.hop = int(hop)
        self._check(merged)
        self._s = merged
        self.instrument = instrument
        self._warn = on_warning or _warn_default
        self._warned: set[str] = set()
        if merged["method"] == "default":
            self._tables = K.Tables(self.sr, self.hop, merged)
            self.n_fft = self._tables.n_fft
            if merged["latency_ms"] is not None:
                self.latency_s = float(merged["latency_ms"]) / 1000.0
            else:
                from rolypoly.ears.calibration import latency_s
                self.latency_s = latency_s(self.sr, self.hop, self.n_fft, merged["lag"], merged["ref_frames"])
            # the flux cue's latency in hops, for merging it with the pitch cues
            self._tables.tp[K.K_FLUX_LATENCY] = self.latency_s * self.sr / self.hop
            if merged["latency_ms"] is None:
                from rolypoly.ears.calibration import attack_dating_s
                offset, slow = attack_dating_s()
                offset = offset if merged["attack_shift_ms"] is None else merged["attack_shift_ms"] / 1000.0
                slow = slow if merged["attack_slow_ms"] is None else merged["attack_slow_ms"] / 1000.0
                self._tables.tp[K.K_ATTACK_OFFSET] = offset * self.sr / self.hop
                self._tables.tp[K.K_ATTACK_SLOW] = slow * self.sr / self.hop
            else:   # forced compensation (0: raw detection times): no attack dating either
                self._tables.tp[K.K_ATTACK] = 0.0
        elif merged["method"] == "network":
            from rolypoly.ears.network import NetworkDetector
            given = {k for k, v in settings.items() if v is not None} | set(PRESETS.get(instrument, {}) if instrument else ())
            self._net = NetworkDetector(self.sr, model=merged["model"], threshold=merged["net_threshold"],
                                        min_ioi_ms=merged["min_ioi_ms"] if "min_ioi_ms" in given else None,
                                        gain_db=float(merged["gain_db"]), silence_db=float(merged["silence_db"]))
            self.n_fft = self._net.front.n_fft
            self.latency_s = (float(merged["latency_ms"]) / 1000.0 if merged["latency_ms"] is not None
                              else self._net.latency_s)
        else:
            self.n_fft = int(2 ** round(math.log2(max(self.hop, merged["buf"] * self.sr / 48000.0))))
            self._aubio = AubioDetector(merged["method"], self.sr, self.hop, self.n_fft, merged["silence_db"],
                                        merged["min_ioi_ms"], gain=10.0 ** (merged["gain_db"] / 20.0))
            self.latency_s = (float(merged["latency_ms"]) / 1000.0 if merged["latency_ms"] is not None
                              else self._aubio.latency_s)
        self.reset()

    # -- construction -----------------------------------------------------------
    def _check(self, s):
        if self.sr < 8000 or self.sr > 384000:
            raise ConfigError(f"listen: sample rate {self.sr} is out of range (8000..384000)")
        if not 16 <= self.hop <= 8192:
            raise ConfigError(f"listen.hop: {self.hop} is out of range (16..8192)")
        if s["method"] not in METHODS:
            raise ConfigError(f"listen.method: unknown method {s['method']!r}; choose one of {', '.join(METHODS)}")
        for key in ("buf", "threshold", "min_ioi_ms", "compression", "release_s", "avg_ms", "max_ms"):
            v = s[key]
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"listen.{key}: must be a non-negative number, got {v!r}")
        if int(s["buf"]) < self.hop:
            raise ConfigError(f"listen.buf ({s['buf']}) must be at least listen.hop ({self.hop})")
        if s["lag"] < 1:
            raise ConfigError("listen.lag must be >= 1")
        v = s["player_db"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v > 0:
            raise ConfigError(f"listen.player_db: must be a level in dBFS (<= 0), got {v!r}")
        for key in ("quiet_db", "hold_ms", "runup_flatness", "stroke_decay_db", "hold_flatness"):
            v = s[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"listen.{key}: must be a non-negative number, got {v!r}")
        for key in ("voicing", "slur_semitones", "pitch_fmin", "tonal_merge_ms", "pitch_window_ms"):
            v = s[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"listen.{key}: must be a positive number, got {v!r}")
        for key in ("attack_rise_db", "attack_floor_db", "attack_peak_db", "attack_before_db", "attack_swell_db",
                    "attack_window_ms"):
            v = s[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                unit = "ms" if key.endswith("_ms") else "dB"
                raise ConfigError(f"listen.{key}: must be a non-negative number of {unit}, got {v!r}")
        for key in ("attack_shift_ms", "attack_slow_ms"):
            v = s[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ConfigError(f"listen.{key}: must be a number of ms or null, got {v!r}")
        for key in ("tonal", "slur", "tonal_swell", "attack_dating"):
            if not isinstance(s[key], bool):
                raise ConfigError(f"listen.{key}: must be true or false, got {s[key]!r}")
        v = s["net_threshold"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0):
            raise ConfigError(f"listen.net_threshold: must be a probability in (0, 1), got {v!r}")
        # a file path, or (weights, meta) already loaded (the bench's fold models)
        if s["model"] is not None and not isinstance(s["model"], (str, tuple)):
            raise ConfigError(f"listen.model: must be a file path, got {s['model']!r}")

    @classmethod
    def from_config(cls, cfg, sr: int, on_warning=None) -> "Listener":
        """Build from the ``listen`` config group (``cfg.listen``).

        Examples
        --------
        >>> from rolypoly.config import load_config
        >>> lis = Listener.from_config(load_config().listen, 48000)   # doctest: +SKIP
        """
        try:
            from omegaconf import OmegaConf
            d = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
        except ImportError:
            d = dict(cfg)
        hop = int(d.pop("hop", 128))
        instrument = d.pop("instrument", None)
        extra = d.pop("settings", None) or {}
        d.update(extra)
        return cls(sr, hop, on_warning=on_warning, instrument=instrument, **d)

    # -- state ---------------------------------------------------------------
    @property
    def settings(self) -> dict:
        """The settings that rebuild this listener (plus its latency, for the record)."""
        out = dict(self._s)
        out.update(sr=self.sr, hop=self.hop, instrument=self.instrument,
                   latency_ms=round(self.latency_s * 1000.0, 4))
        return out

    def reset(self) -> None:
        """Forget everything heard: the next block is time zero."""
        self._hops = 0
        self._clip_run = 0
        self._dc = 0.0
        self._silent_hops = 0
        self._noise_hops = 0
        self._noise_onsets = 0
        self._recent: list[float] = []
        if self._s["method"] == "default":
            self._state = K.State(self._tables)
        elif self._s["method"] == "network":
            self._net.reset()
        else:
            self._aubio.reset()
        self._odf_out = np.zeros(0)
        self.odf: list[float] | None = None  # set to [] to record the detection function

    # -- input checks --------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)

    def _as_2d(self, block) -> np.ndarray:
        """(n, channels) float32, C-contiguous; integer samples scaled to [-1, 1)."""
        x = np.asarray(block)
        if x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            x = (x.astype(np.float64) - (info.max + 1 + info.min) / 2.0) / ((info.max - info.min + 1) / 2.0)
        elif x.dtype.kind not in "fc" and x.dtype != np.bool_:
            raise AudioError(f"listener input must be numbers, got dtype {x.dtype}")
        if np.iscomplexobj(x):
            x = x.real
        if x.ndim == 0:
            x = x.reshape(1, 1)
        elif x.ndim == 1:
            x = x.reshape(-1, 1)
        elif x.ndim > 2:
            self._warn_once("shape", f"listener: input of shape {x.shape} read as (frames, channels) "
                                     f"with {int(np.prod(x.shape[1:]))} channels")
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] == 0:
            self._warn_once("no_channels", "listener: input block has no channels; heard as silence")
            x = np.zeros((x.shape[0], 1), np.float32)
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        return x

    def _check_input(self, n: int, n_bad: float, n_clip: float, total: float) -> None:
        """Warnings from the kernel's input statistics for the last block."""
        if n_bad:
            self._warn_once("nan", "listener: input has NaN/inf samples (broken driver?); "
                                   "they are treated as silence")
        if n_clip:
            self._clip_run += int(n_clip)
            if self._clip_run > 0.01 * self.sr:
                self._warn_once("clip", "listener: input is clipping; turn the input gain down")
        if n:
            self._dc = 0.99 * self._dc + 0.01 * total / n
            if abs(self._dc) > 0.05:
                self._warn_once("dc", f"listener: input has a DC offset of {self._dc:+.2f} "
                                      "(removed before detection)")

    def _check_level(self, n_hops: int, n_onsets: int) -> None:
        """Silence, steady noise: judged from the kernel's level follower and band flatness."""
        st = self._state.st
        hop_s = self.hop / self.sr
        if st[K.S_LEVEL] < self._tables.params[K.P_FLOOR]:
            self._silent_hops += n_hops
            if self._silent_hops * hop_s >= SILENT_WARN_S:
                self._warn_once("silent", f"listener: no input over {self._s['silence_db']:.0f} dBFS for "
                                          f"{SILENT_WARN_S:.0f} s (input muted or disconnected?)")
            self._noise_hops = self._noise_onsets = 0
            return
        self._silent_hops = 0
        if st[K.S_FLATNESS] > NOISE_FLATNESS:
            self._noise_hops += n_hops
            self._noise_onsets += n_onsets
            if self._noise_hops * hop_s >= NOISE_WARN_S:
                if self._noise_onsets <= NOISE_WARN_S:
                    self._warn_once("noise", "listener: the input is steady noise (no instrument heard); "
                                             "check the input channel and the gain")
                self._noise_hops = self._noise_onsets = 0
        else:
            self._noise_hops = self._noise_onsets = 0

    def _storm_guard(self, times: list[float]) -> list[float]:
        """Drop onsets beyond :data:`STORM_PER_S` a second (over the last :data:`STORM_S`):
        a broken input must not drag the drums around."""
        keep = []
        limit = int(STORM_PER_S * STORM_S)
        for t in times:
            recent = self._recent
            while recent and recent[0] < t - STORM_S:
                recent.pop(0)
            if len(recent) >= limit:
                self._warn_once("storm", f"listener: more than {STORM_PER_S:.0f} onsets a second; "
                                         "ignoring the excess (noisy or broken input?)")
                continue
            recent.append(t)
            keep.append(t)
        return keep

    # -- processing ----------------------------------------------------------
    def process(self, block) -> list[float]:
        """Feed one block (any length); returns onset times (s since stream start).

        Any split of the stream into blocks gives the same onsets: the default detector
        works hop by hop on its own buffer.

        Parameters
        ----------
        block : np.ndarray
            Mono ``(n,)`` or multichannel ``(n, ch)`` samples, float (integers are scaled).

        Returns
        -------
        list of float
            Latency-compensated onset times found while processing this block.
        """
        x = self._as_2d(block)
        if self._s["method"] == "network":
            return self._storm_guard(self._process_network(x))
        if self._s["method"] != "default":
            return self._storm_guard(self._process_aubio(x))
        n = x.shape[0]
        state = self._state
        max_hops = (n + state.pending) // self.hop + 1
        if self.odf is not None and self._odf_out.size < max_hops:
            self._odf_out = np.zeros(max_hops)
        n_on, n_hops = state.run(self._tables, x, self._odf_out if self.odf is not None else self._odf_out[:0])
        self._hops += n_hops
        stats = state.stats
        if stats[K.STAT_BAD] or stats[K.STAT_CLIP] or abs(stats[K.STAT_SUM]) > 0.05 * n or abs(self._dc) > 0.05:
            self._check_input(n, stats[K.STAT_BAD], stats[K.STAT_CLIP], stats[K.STAT_SUM])
        if n_hops:
            self._check_level(n_hops, n_on)
        if self.odf is not None and n_hops:
            self.odf.extend(self._odf_out[:n_hops].tolist())
        if not n_on:
            return []
        scale = self.hop / self.sr
        # flux onsets carry the detection hop (minus the latency); pitch-cue onsets are
        # already dated where the change entered the window
        return self._storm_guard([max(0.0, h * scale - (self.latency_s if k == 0.0 else 0.0))
                                  for h, k in zip(state.out_hops[:n_on].tolist(), state.out_kind[:n_on].tolist())])

    def _process_network(self, x) -> list[float]:
        """The network path: the input checks here, the conditioning in its front end."""
        # non-finite samples are zeroed (and counted) in the front end's conditioning
        mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
        net = self._net
        hops_before = net.picker.frame
        found = net.process(mono)
        n_bad, n_clip, total = net.front.stats
        if n_bad or n_clip or abs(total) > 0.05 * mono.size or abs(self._dc) > 0.05:
            self._check_input(mono.size, n_bad, n_clip, total)
        n_hops = net.picker.frame - hops_before
        self._hops += n_hops
        if n_hops:
            if net.last_level_db < net.picker.floor_db:
                self._silent_hops += n_hops
                if self._silent_hops * net.frame_s >= SILENT_WARN_S:
                    self._warn_once("silent", f"listener: no input over {net.picker.floor_db:.0f} dBFS for "
                                              f"{SILENT_WARN_S:.0f} s (input muted or disconnected?)")
            else:
                self._silent_hops = 0
        shift = self.latency_s - net.latency_s
        return [max(0.0, t - shift) for t in found]

    def _process_aubio(self, x) -> list[float]:
        """The aubio path's conditioning (non-finite samples zeroed, channels averaged)."""
        bad = ~np.isfinite(x)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            x = np.where(bad, np.float32(0.0), x)
        mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
        self._check_input(mono.size, n_bad, int(np.count_nonzero(np.abs(x) >= 0.999)), float(np.sum(mono)))
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        self._hops += (mono.size + self._aubio._n_pending) // self.hop
        found = self._aubio.process(mono)
        # aubio's own compensation, or the forced one
        shift = self.latency_s - self._aubio.latency_s
        return [max(0.0, t - shift) for t in found]


def detect_onsets(audio, sr: int, hop: int = 128, block: int | None = None, reported: bool = False,
                  **settings):
    """Onset times (s, sorted) in a whole recording, by the same streaming :class:`Listener`.

    The recording is fed in ``block``-frame blocks (default ``max(hop, 4096)``: any split
    gives the same onsets).  With ``reported=True`` it also returns, for each onset, the
    moment the listener reported it: the stream time at the end of the block whose
    :meth:`Listener.process` call returned it.  That moment depends on the block, so pass
    the engine's block (``audio.block_frames``, 128) when the report delay matters.

    Returns
    -------
    times : np.ndarray
        Onset times, sorted.
    reported_at : np.ndarray
        Only with ``reported=True``: the report moment of each onset (s), in the same
        order as ``times`` (a pitch-cue onset is dated back, so it can sort before an
        onset that was reported earlier).

    Examples
    --------
    >>> x = np.zeros(48000, np.float32); x[12000:12200] = np.hanning(200)
    >>> detect_onsets(x, 48000).round(2)   # doctest: +SKIP
    array([0.25])
    >>> t, at = detect_onsets(x, 48000, block=128, reported=True)
    >>> bool(np.all(at >= t))   # noticed after it began, at a block's end
    True
    """
    lis = settings.pop("listener", None) or Listener(sr, hop, **settings)
    x = np.asarray(audio)
    block = block or max(hop, 4096)
    found: list[float] = []
    at: list[float] = []
    for i in range(0, x.shape[0], block):
        new = lis.process(x[i:i + block])
        found += new
        at += [min(i + block, x.shape[0]) / sr] * len(new)
    # a pitch-cue onset is dated back, so it can come after a later flux onset
    times = np.asarray(found, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    if not reported:
        return times[order]
    return times[order], np.asarray(at, dtype=np.float64)[order]


def soundcheck(audio, sr: int, instrument: str | None = "guitar", hop: int = 128, base: dict | None = None) -> dict:
    """Listener settings from a few seconds of the musician: see :func:`rolypoly.ears.calibration.soundcheck`."""
    from rolypoly.ears.calibration import soundcheck as check
    return check(audio, sr, instrument=instrument, hop=hop, base=base)
