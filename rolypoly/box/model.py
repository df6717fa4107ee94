"""The step sequencer behind ``rolypoly box``: patterns, timing and undo, without any UI.

A :class:`Box` holds a kit (8 channels, each playing one drum class), twelve
:class:`Pattern` s ``a``..``l`` of 1..32 steps (trigger, accent and fill per channel and
step), the transport settings (tempo, step rate, swing, fill rate) and the mixer
(mute, solo, level, pan, choke per channel; a morph between two kits).  Every edit
goes through a method that records an undo point.

Timing (what :meth:`Box.step_samples` computes, exact to the sample): a step lasts
``60 / bpm * beats`` seconds, ``beats`` from the step rate (1/8 = 0.5, 1/8T = 1/3,
1/16 = 0.25, 1/16T = 1/6, 1/32 = 0.125).  Swing delays every odd step by
``swing / 100`` of half a step: the pair of steps splits ``(1 + s/2) : (1 - s/2)``
(0 % straight, 66.7 % the triplet feel 2:1, 100 % 3:1).  Step ``k`` of a pass starting at sample ``s0`` begins at
``s0 + round((k * step + (k odd) * swing * step / 2) * sr)`` -- rounded once from the
exact rational time, so no error accumulates.

Fills: fill steps sound when fill is held (:attr:`Box.fill`) or, with a fill rate of
N, on every N-th pass of a pattern (Microtonic's "2x" = every second pass).

Chains: a pattern whose ``chained`` flag is set continues into the next letter; a
run of chained patterns plays in order and loops.  Switching to another pattern while
playing is queued until the current pattern's end.

Examples
--------
>>> box = Box()
>>> _ = box.toggle(0, 0); _ = box.toggle(0, 8)
>>> box.pattern.grid(0)
'x-------x-------'
>>> _ = box.undo(); box.pattern.grid(0)
'x---------------'
>>> box.step_samples(48000)[:3]           # 120 bpm, 1/16: 6000 samples a step
[0, 6000, 12000]
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from rolypoly.errors import BoxError

N_CHANNELS = 8
MAX_STEPS = 32
PATTERN_NAMES = "abcdefghijkl"
#: Step rates as fractions of a beat (a quarter note), Microtonic's choices.
STEP_RATES = {"1/8": Fraction(1, 2), "1/8T": Fraction(1, 3), "1/16": Fraction(1, 4), "1/16T": Fraction(1, 6),
              "1/32": Fraction(1, 8)}
FILL_RATES = (0, 1, 2, 3, 4, 6, 8, 12, 16)   # 0 = only while fill is held
NORMAL_VELOCITY = 96
ACCENT_VELOCITY = 127
UNDO_DEPTH = 256
KINDS = ("trigger", "accent", "fill")


@dataclass
class Pattern:
    """One pattern: ``length`` steps of trigger, accent and fill per channel (arrays hold 32 steps)."""

    name: str
    length: int = 16
    chained: bool = False
    triggers: np.ndarray = field(default_factory=lambda: np.zeros((N_CHANNELS, MAX_STEPS), bool))
    accents: np.ndarray = field(default_factory=lambda: np.zeros((N_CHANNELS, MAX_STEPS), bool))
    fills: np.ndarray = field(default_factory=lambda: np.zeros((N_CHANNELS, MAX_STEPS), bool))

    def grid(self, channel: int, kind: str = "trigger") -> str:
        """The channel's steps as text: ``x`` set, ``-`` not (``length`` characters)."""
        row = self._array(kind)[channel, :self.length]
        return "".join("x" if v else "-" for v in row)

    def _array(self, kind: str) -> np.ndarray:
        if kind not in KINDS:
            raise BoxError(f"step kind {kind!r}; expected one of {', '.join(KINDS)}")
        return {"trigger": self.triggers, "accent": self.accents, "fill": self.fills}[kind]

    def as_int(self, channel: int) -> int:
        """The channel's first 16 triggers as an introspection pattern hash (step 0 = lowest bit)."""
        return int(sum(1 << i for i in range(min(16, self.length)) if self.triggers[channel, i]))

    @property
    def empty(self) -> bool:
        return not (self.triggers[:, :self.length].any() or self.fills[:, :self.length].any())


@dataclass
class Mix:
    """Per-channel mixer settings."""

    mute: list[bool] = field(default_factory=lambda: [False] * N_CHANNELS)
    solo: list[bool] = field(default_factory=lambda: [False] * N_CHANNELS)
    level: list[float] = field(default_factory=lambda: [0.0] * N_CHANNELS)     # dB added to the patch
    pan: list[float] = field(default_factory=lambda: [0.0] * N_CHANNELS)       # -1..1
    choke: list[int] = field(default_factory=lambda: [0] * N_CHANNELS)         # group, 0 = none

    def audible(self, channel: int) -> bool:
        if any(self.solo):
            return self.solo[channel] and not self.mute[channel]
        return not self.mute[channel]


class Box:
    """The sequencer state (see module docs).

    Parameters
    ----------
    kit : rolypoly.synth.Kit, optional
        The kit (default: our default kit, loaded lazily by :attr:`kit`).
    channel_drums : list of 8 drum class indices, optional
        Which drum class each channel plays (default: from the kit's mapping).
    """

    def __init__(self, kit=None, channel_drums: list[int] | None = None):
        self._kit = kit
        self.kit_b = None                    # the second kit of the morph (None = no morph)
        self.morph = 0.0
        self.kit_name = getattr(kit, "name", "default")
        self.patterns = {n: Pattern(n) for n in PATTERN_NAMES}
        self.current = "a"                   # the pattern shown and edited
        self.queued: str | None = None       # switch at the end of the playing pattern
        self.bpm = 120.0
        self.step_rate = "1/16"
        self.swing = 0.0                     # percent, 0..100
        self.fill_rate = 0                   # every N-th pass plays the fills (0 = only when held)
        self.fill = False
        self.humanize = False
        self.listen = False
        self.synth = True                    # False: the hits go out as MIDI only, the synth is silent
        self.mix = Mix()
        self.channel = 0                     # the selected channel (the cursor's row)
        self.cursor = 0                      # the cursor's step
        self.basis = 0                       # the basis channel of "generate"
        self._channel_drums = channel_drums
        self._undo: list[tuple[str, dict]] = []
        self._redo: list[tuple[str, dict]] = []
        self.last_action = ""
        if kit is not None:
            self._init_mix_from_kit()

    # -- kit -----------------------------------------------------------------------------------
    @property
    def kit(self):
        if self._kit is None:
            from rolypoly.synth import load_kit
            self._kit = load_kit(None)
            self.kit_name = self._kit.name
            self._init_mix_from_kit()
        return self._kit

    def _init_mix_from_kit(self) -> None:
        self.mix.pan = [float(c.pan) for c in self._kit.channels]
        self.mix.choke = [int(c.choke) for c in self._kit.channels]

    def set_kit(self, kit, channel_drums: list[int] | None = None) -> None:
        """Use ``kit`` (undoable); the channel -> drum assignment follows its mapping unless given."""
        self._record("kit")
        self._kit = kit
        self.kit_name = kit.name
        self._channel_drums = channel_drums
        self._init_mix_from_kit()

    @property
    def channel_drums(self) -> list[int]:
        """The drum class (0..8) each channel plays: for each channel, the first class mapped to it."""
        if self._channel_drums is not None:
            return list(self._channel_drums)
        from rolypoly.score.drums import DRUMS
        kit = self.kit
        out = []
        for ch in range(N_CHANNELS):
            mine = [d for d in range(len(DRUMS)) if kit.class_channel(d) == ch]
            out.append(mine[0] if mine else -1)
        return out

    def channel_names(self) -> list[str]:
        return [c.name or c.patch.name or f"ch{i + 1}" for i, c in enumerate(self.kit.channels)]

    def playing_kit(self):
        """The kit as played: the morph between kit and kit_b, the mixer's level/pan/choke applied."""
        from dataclasses import replace

        from rolypoly.synth.kit import Channel, Kit
        from rolypoly.synth.patch import morph
        base = self.kit
        chans = []
        for i, ch in enumerate(base.channels):
            patch = ch.patch
            if self.kit_b is not None and self.morph > 0:
                patch = morph(patch, self.kit_b.channels[i].patch, self.morph)
            lv = patch.level + self.mix.level[i] if math.isfinite(patch.level) else patch.level
            patch = replace(patch, level=min(24.0, lv) if self.synth else -math.inf)
            chans.append(Channel(patch=patch, pan=float(self.mix.pan[i]), choke=int(self.mix.choke[i]), name=ch.name))
        mapping = dict(base.mapping)
        for ch, d in enumerate(self.channel_drums):
            if d >= 0:
                from rolypoly.score.drums import DRUMS
                mapping[DRUMS[d]] = ch + 1
        return Kit(name=base.name, channels=chans, mapping=mapping, tune=dict(base.tune))

    # -- undo ----------------------------------------------------------------------------------
    _STATE = ("patterns", "current", "bpm", "step_rate", "swing", "fill_rate", "mix", "_kit", "kit_b",
              "morph", "kit_name", "_channel_drums", "basis")

    def _snapshot(self) -> dict:
        snap = {}
        for k in self._STATE:
            v = getattr(self, k)
            # kits are replaced, never changed in place by the box: share them
            snap[k] = v if k in ("_kit", "kit_b") else copy.deepcopy(v)
        return snap

    def _record(self, action: str) -> None:
        self._undo.append((action, self._snapshot()))
        del self._undo[:-UNDO_DEPTH]
        self._redo.clear()
        self.last_action = action

    def undo(self) -> str | None:
        """Undo the last action; returns its name (None when there is nothing to undo)."""
        if not self._undo:
            return None
        action, snap = self._undo.pop()
        self._redo.append((action, self._snapshot()))
        for k, v in snap.items():
            setattr(self, k, v)
        self.last_action = f"undo {action}"
        return action

    def redo(self) -> str | None:
        if not self._redo:
            return None
        action, snap = self._redo.pop()
        self._undo.append((action, self._snapshot()))
        for k, v in snap.items():
            setattr(self, k, v)
        self.last_action = f"redo {action}"
        return action

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    # -- steps ---------------------------------------------------------------------------------
    @property
    def pattern(self) -> Pattern:
        return self.patterns[self.current]

    def _check(self, channel: int, step: int | None = None) -> None:
        if not 0 <= channel < N_CHANNELS:
            raise BoxError(f"channel {channel + 1} outside 1..{N_CHANNELS}")
        if step is not None and not 0 <= step < self.pattern.length:
            raise BoxError(f"step {step + 1} outside 1..{self.pattern.length} (pattern {self.current})")

    def toggle(self, channel: int, step: int, kind: str = "trigger") -> bool:
        """Flip one step (an accent or fill also sets the trigger); returns the new value."""
        self._check(channel, step)
        self._record(f"toggle {kind}")
        arr = self.pattern._array(kind)
        arr[channel, step] = not arr[channel, step]
        if kind == "accent" and arr[channel, step]:
            self.pattern.triggers[channel, step] = True
        if kind == "trigger" and not arr[channel, step]:
            self.pattern.accents[channel, step] = False
        return bool(arr[channel, step])

    def set_steps(self, channel: int, steps, value: bool = True, kind: str = "trigger", action: str = "paint") -> None:
        """Set (or clear) several steps of a channel as one undoable action (hold-and-move painting)."""
        self._check(channel)
        steps = [int(s) for s in steps]
        for s in steps:
            self._check(channel, s)
        self._record(action)
        arr = self.pattern._array(kind)
        for s in steps:
            arr[channel, s] = value
            if kind == "trigger" and not value:
                self.pattern.accents[channel, s] = self.pattern.fills[channel, s] = False

    def erase(self, channel: int | None = None) -> None:
        """Clear a channel of the current pattern (every channel when ``channel`` is None)."""
        self._record("erase")
        rows = range(N_CHANNELS) if channel is None else [channel]
        for ch in rows:
            self._check(ch)
            for arr in (self.pattern.triggers, self.pattern.accents, self.pattern.fills):
                arr[ch] = False

    def set_channel_pattern(self, channel: int, steps: str | int, action: str = "set channel") -> None:
        """Replace a channel's triggers with a pattern string (``x---x---``) or hash (step 0 = bit 0)."""
        self._check(channel)
        n = self.pattern.length
        if isinstance(steps, str):
            bits = [c in "xX#1" for c in steps.replace(" ", "").replace("|", "")]
        else:
            bits = [bool(int(steps) >> i & 1) for i in range(16)]
        self._record(action)
        row = np.zeros(MAX_STEPS, bool)
        for i in range(n):   # a 16-step answer repeats across a 32-step pattern
            row[i] = bits[i % len(bits)] if bits else False
        self.pattern.triggers[channel] = row
        self.pattern.accents[channel] &= row
        self.pattern.fills[channel] &= row

    # -- patterns ------------------------------------------------------------------------------
    def set_length(self, length: int) -> None:
        length = int(length)
        if not 1 <= length <= MAX_STEPS:
            raise BoxError(f"pattern length {length} outside 1..{MAX_STEPS}")
        self._record("length")
        self.pattern.length = length
        self.cursor = min(self.cursor, length - 1)

    def select(self, name: str, playing: bool = False) -> None:
        """Show and edit pattern ``name``; while playing the switch is queued to the pattern's end."""
        if name not in self.patterns:
            raise BoxError(f"pattern {name!r}; patterns are a..l")
        if playing and name != self.current:
            self.queued = name
        self.current = name
        self.cursor = min(self.cursor, self.pattern.length - 1)

    def toggle_chain(self, name: str | None = None) -> bool:
        """Chain pattern ``name`` (default: the current one) into the next letter, or unchain it."""
        name = name or self.current
        i = PATTERN_NAMES.index(name)
        if i == len(PATTERN_NAMES) - 1:
            raise BoxError("pattern l is the last: nothing to chain it into")
        self._record("chain")
        p = self.patterns[name]
        p.chained = not p.chained
        return p.chained

    def copy_pattern(self, src: str, dst: str) -> None:
        if src not in self.patterns or dst not in self.patterns:
            raise BoxError(f"patterns are a..l, got {src!r} -> {dst!r}")
        self._record("copy pattern")
        p = copy.deepcopy(self.patterns[src])
        p.name, p.chained = dst, self.patterns[dst].chained
        self.patterns[dst] = p

    def chain(self, name: str | None = None) -> list[str]:
        """The chain pattern ``name`` belongs to, in play order (just ``[name]`` when unchained)."""
        name = name or self.current
        i = PATTERN_NAMES.index(name)
        while i > 0 and self.patterns[PATTERN_NAMES[i - 1]].chained:
            i -= 1
        out = [PATTERN_NAMES[i]]
        while self.patterns[PATTERN_NAMES[i]].chained and i + 1 < len(PATTERN_NAMES):
            i += 1
            out.append(PATTERN_NAMES[i])
        return out

    # -- settings ------------------------------------------------------------------------------
    def set_bpm(self, bpm: float) -> None:
        bpm = float(bpm)
        if not math.isfinite(bpm) or not 20.0 <= bpm <= 400.0:
            raise BoxError(f"tempo {bpm} outside 20..400 bpm")
        self._record("tempo")
        self.bpm = bpm

    def set_step_rate(self, rate: str) -> None:
        if rate not in STEP_RATES:
            raise BoxError(f"step rate {rate!r}; expected one of {', '.join(STEP_RATES)}")
        self._record("step rate")
        self.step_rate = rate

    def set_swing(self, percent: float) -> None:
        percent = float(percent)
        if not math.isfinite(percent) or not 0.0 <= percent <= 100.0:
            raise BoxError(f"swing {percent}% outside 0..100 %")
        self._record("swing")
        self.swing = percent

    def set_fill_rate(self, n: int) -> None:
        if int(n) not in FILL_RATES:
            raise BoxError(f"fill rate {n}; expected one of {', '.join(map(str, FILL_RATES))} (0 = when held)")
        self._record("fill rate")
        self.fill_rate = int(n)

    def set_mix(self, what: str, channel: int, value) -> None:
        """Set ``mute``, ``solo`` (bool), ``level`` (dB -60..12), ``pan`` (-1..1) or ``choke`` (0..8)."""
        self._check(channel)
        lim = {"level": (-60.0, 12.0), "pan": (-1.0, 1.0), "choke": (0, 8)}
        if what in ("mute", "solo"):
            value = bool(value)
        elif what in lim:
            lo, hi = lim[what]
            value = int(value) if what == "choke" else float(value)
            if not (lo <= value <= hi):
                raise BoxError(f"channel {channel + 1} {what} {value} outside {lo}..{hi}")
        else:
            raise BoxError(f"mixer setting {what!r}; expected mute, solo, level, pan or choke")
        self._record(what)
        getattr(self.mix, what)[channel] = value

    def set_morph(self, t: float, kit_b=None) -> None:
        t = float(t)
        if not 0.0 <= t <= 1.0:
            raise BoxError(f"morph {t} outside 0..1")
        self._record("morph")
        if kit_b is not None:
            self.kit_b = kit_b
        self.morph = t

    def set_param(self, channel: int, name: str, value) -> None:
        """Set one voice parameter of a channel's patch (the channel page), undoable."""
        from dataclasses import replace

        from rolypoly.synth.kit import Kit
        from rolypoly.synth.patch import SPECS, Patch
        self._check(channel)
        if name not in SPECS:
            raise BoxError(f"voice parameter {name!r}; known: {', '.join(SPECS)}")
        kit = self.kit
        patch = Patch.from_dict({**kit.channels[channel].patch.to_dict(), name: value},
                                where=f"channel {channel + 1}")
        self._record(f"param {name}")
        chans = list(kit.channels)
        chans[channel] = replace(chans[channel], patch=patch)
        self._kit = Kit(name=kit.name, channels=chans, mapping=dict(kit.mapping), tune=dict(kit.tune))

    # -- timing --------------------------------------------------------------------------------
    def step_seconds(self) -> Fraction:
        """One step's length in seconds, exact."""
        return Fraction(60) / Fraction(self.bpm).limit_denominator(10 ** 6) * STEP_RATES[self.step_rate]

    def step_samples(self, sr: int, length: int | None = None, start: int = 0) -> list[int]:
        """First sample of each step of one pass of the current pattern starting at ``start``."""
        n = self.pattern.length if length is None else int(length)
        step = self.step_seconds()
        swing = Fraction(self.swing).limit_denominator(10 ** 6) / 100
        return [start + _round(((k * step) + (step * swing / 2 if k % 2 else 0)) * sr) for k in range(n)]

    def pass_samples(self, sr: int, length: int | None = None) -> int:
        """Samples of one pass (``length`` steps; the next pass starts exactly there)."""
        n = self.pattern.length if length is None else int(length)
        return _round(n * self.step_seconds() * sr)

    def sequence_hits(self, sequence: list[str], sr: int, passes: list[int] | None = None) -> list[tuple[int, int, int, int]]:
        """(sample, channel, velocity, step) of every sounding step of ``sequence`` played in a row.

        ``passes`` gives each entry's pass number (for the fill rate); default 1, 2, 3, ...
        Pass boundaries are exact to the sample (each starts at the rounded running total
        of exact pass lengths).
        """
        out = []
        t = Fraction(0)
        count: dict[str, int] = {}
        for j, name in enumerate(sequence):
            pat = self.patterns[name]
            count[name] = count.get(name, 0) + 1
            k_pass = passes[j] if passes is not None else count[name]
            fills_on = self.fill or (self.fill_rate > 0 and k_pass % self.fill_rate == 0)
            step = self.step_seconds()
            swing = Fraction(self.swing).limit_denominator(10 ** 6) / 100
            for k in range(pat.length):
                at = _round((t + k * step + (step * swing / 2 if k % 2 else 0)) * sr)
                for ch in range(N_CHANNELS):
                    if not self.mix.audible(ch):
                        continue
                    if pat.triggers[ch, k] or (fills_on and pat.fills[ch, k]):
                        vel = ACCENT_VELOCITY if pat.accents[ch, k] else NORMAL_VELOCITY
                        out.append((at, ch, vel, k))
            t += pat.length * step
        out.sort()
        return out

    def sequence_seconds(self, sequence: list[str]) -> float:
        return float(sum(self.patterns[n].length for n in sequence) * self.step_seconds())


def _round(x: Fraction) -> int:
    """Round half up, exactly (no float error at .5)."""
    return math.floor(x + Fraction(1, 2))
