"""Free mode in the live engine: the ``generate``, ``density`` and ``complexity`` attributes.

:class:`FreeMode` is the component the engine holds.  It validates the attributes
(:func:`check_attribute`, also used by the OSC bridge through the engine's checks) and,
when a take starts, :meth:`FreeMode.prepare` gives the engine the score to play: the score
itself when ``generate`` is ``off``, else the score continued, filled or freely improvised
by the event model (:func:`rolypoly.free.generate.generate`), its generated rows placed on
the score's tempo map ahead of the playhead.  The engine plays those rows like the score's:
the performance model gives them velocities and micro-timing while listening, and the take
(and train-after-take) sees them as rows of the piece.

Attributes::

    set generate off|continue|fill|free [bars [fill_every]]
    set density <0..1 | auto>        set complexity <0..1 | auto>     (auto: follow the music)

The sampling window is the engine's ``generate_vels`` (a window on drum probabilities
here; ``generate.generate_vels`` until the attribute is set).

Examples
--------
>>> fm = FreeMode.from_config(load_config([]))      # doctest: +SKIP
>>> fm.set("generate", "continue", 8)               # doctest: +SKIP
>>> played = fm.prepare(score)                      # doctest: +SKIP
"""
from __future__ import annotations

import math

from rolypoly.errors import EngineError

MODES = ("off", "continue", "fill", "free")
FREE_ATTRIBUTES = ("generate", "density", "complexity")
MAX_BARS = 1000


def _knob(name: str, value):
    if str(value).strip().lower() in ("auto", "none", "null"):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EngineError(f"attribute {name}: expected a number in [0, 1] or auto, got {value!r}") from None
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise EngineError(f"attribute {name}: {value!r} is outside [0, 1] (or auto)")
    return v


def _whole(name: str, what: str, value, lo: int, hi: int) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EngineError(f"attribute {name}: {what} must be a whole number, got {value!r}") from None
    if not math.isfinite(v) or v != int(v) or not lo <= v <= hi:
        raise EngineError(f"attribute {name}: {what} must be a whole number in [{lo}, {hi}], got {value!r}")
    return int(v)


def check_attribute(attribute: str, values) -> tuple:
    """The checked value(s) of a free-mode attribute; :class:`EngineError` naming the problem.

    >>> check_attribute("generate", ["continue", "4"])
    ('continue', 4, None)
    >>> check_attribute("density", ["auto"])
    (None,)
    """
    values = list(values)
    if attribute == "generate":
        if not 1 <= len(values) <= 3:
            raise EngineError("attribute generate: expected a mode (off, continue, fill, free) [bars [fill_every]]")
        mode = str(values[0]).strip().lower()
        if mode not in MODES:
            raise EngineError(f"attribute generate: {values[0]!r} is not one of {', '.join(MODES)}")
        bars = _whole("generate", "bars", values[1], 0, MAX_BARS) if len(values) > 1 else None
        every = _whole("generate", "fill_every", values[2], 0, MAX_BARS) if len(values) > 2 else None
        return mode, bars, every
    if attribute in ("density", "complexity"):
        if len(values) != 1:
            raise EngineError(f"attribute {attribute}: expected one value, got {len(values)}")
        return (_knob(attribute, values[0]),)
    raise EngineError(f"not a free-mode attribute: {attribute!r}")


class FreeMode:
    """Free-mode settings and the event model, loaded on first use (see module docs)."""

    def __init__(self, events_model: str, mode: str = "off", bars: int = 8, fill_every: int = 0,
                 density=None, complexity=None, temperature: float = 1.0, seed=None, window=(0.0, 1.0),
                 heads: dict | None = None):
        self.events_model = str(events_model)
        self.mode, self.bars, self.fill_every = check_attribute("generate", [mode, bars, fill_every])
        self.density = check_attribute("density", [density])[0]
        self.complexity = check_attribute("complexity", [complexity])[0]
        self.temperature = float(temperature)
        self.seed = None if seed is None else int(seed)
        self.window = (float(window[0]), float(window[1]))   # generate_vels: the engine sets it too
        self.heads = dict(heads or {})   # drum / velocity / loop temperatures (generate.head_temperatures)
        self.runtime = None
        self.takes = 0
        self.last = None      # the last Generated (rows that the model made, first generated bar)
        self.ahead = None     # a LiveGeneration the worker draws from while the take plays
        self._source = None   # the score it was made from

    @classmethod
    def from_config(cls, cfg) -> FreeMode:
        from rolypoly.free.generate import head_temperatures
        g = cfg.generate
        return cls(g.events_model, str(g.mode), int(g.bars), int(g.fill_every), g.density, g.complexity,
                   float(g.temperature), g.seed, tuple(g.get("generate_vels", (0.0, 1.0))), head_temperatures(g))

    def set(self, attribute: str, *values) -> None:
        checked = check_attribute(attribute, values)
        if attribute == "generate":
            self.mode = checked[0]
            self.bars = self.bars if checked[1] is None else checked[1]
            self.fill_every = self.fill_every if checked[2] is None else checked[2]
        elif attribute == "density":
            self.density = checked[0]
        else:
            self.complexity = checked[0]

    def describe(self) -> dict:
        return {"generate": self.mode, "bars": self.bars, "fill_every": self.fill_every, "density": self.density,
                "complexity": self.complexity, "temperature": self.temperature,
                "events_model": getattr(self.runtime, "version", None)}

    def prepare(self, score, generate_vels=None, live: bool = False):
        """The score to play this take: ``score`` itself when off, else with generated rows.

        Given the score it returned last time, it starts again from that one's source, so an
        engine may simply replace its score by the result at every start.  Each take draws
        anew (seed + take number when a seed is set).  With ``live`` (a take that does not
        loop), ``continue`` and ``free`` are not drawn here: :attr:`ahead` (a
        :class:`rolypoly.free.generate.LiveGeneration`) is left for the engine's worker to
        draw from a bar ahead of the playhead, and the score returned holds only what the
        take starts with.  Raises :class:`rolypoly.errors.RolypolyError` (a missing event
        model, a bad setting).
        """
        if self.last is not None and score is self.last.score:
            score = self._source  # the engine hands back what we made last take: start again from its score
        self.last = None
        self.ahead = None
        self._source = score
        if self.mode == "off" or score is None:
            return score
        from rolypoly.free.generate import Generated, LiveGeneration, generate
        if self.runtime is None:
            from rolypoly.free.runtime import load_events
            self.runtime = load_events(self.events_model)
        self.takes += 1
        seed = None if self.seed is None else self.seed + self.takes
        window = self.window if generate_vels is None else generate_vels
        if live and self.mode in ("continue", "free"):
            self.ahead = g = LiveGeneration(self.runtime, score, self.mode, self.bars, self.temperature, window,
                                            self.density, self.complexity, seed, **self.heads)
            self.last = Generated(g.score, g.generated, None, g.first_bar, int((~g.generated).sum()))
            return g.score
        self.last = generate(self.runtime, score, self.mode, bars=self.bars, temperature=self.temperature,
                             generate_vels=window, density=self.density, complexity=self.complexity,
                             fill_every=self.fill_every, seed=seed, **self.heads)
        return self.last.score
