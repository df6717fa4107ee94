"""Reader for Sonic Charge Microtonic ``.mtpreset`` files.

The format: a header ``MicrotonicPresetV3: {``, then nested ``Key: value``
blocks closed by ``}``; values quoted or bare, with units ("48.0 Hz",
"626.5 ms", "inf ms", "-inf dB", "38.9%", "33.0 sm", "88.1 / 11.9"), lists in
braces on one line.  Keys may come in any order; CRLF or LF line ends.
Malformed input raises :class:`PresetError` naming the file and line.

Examples
--------
>>> preset = read_mtpreset("../shared/data/presets/default.mtpreset")   # doctest: +SKIP
>>> preset.kit.channels[0].patch.oscFreq                                 # doctest: +SKIP
48.06096133732516
>>> preset.patterns["a"].triggers.shape                                  # doctest: +SKIP
(8, 16)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rolypoly.errors import PresetError, SynthError
from rolypoly.synth.kit import DEFAULT_MAPPING, Channel, Kit
from rolypoly.synth.patch import SPECS, Patch

WAVES = {"sine": 0, "triangle": 1, "saw": 2}
MOD_MODES = {"decay": 0, "sine": 1, "noise": 2}
FILTERS = {"lp": 0, "bp": 1, "hp": 2}
NOISE_ENVS = {"exp": 0, "linear": 1, "mod": 2}
ON_OFF = {"on": 1, "off": 0, "true": 1, "false": 0}
PATTERN_NAMES = "abcdefghijkl"
MAX_STEPS = 32
MAX_PRESET_BYTES = 1 << 20   # real presets are a few kB
_NUM = r"[-+]?(?:inf|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


@dataclass
class _Value:
    text: str
    line: int


@dataclass
class Pattern:
    """One Microtonic pattern (a..l): 8 channel rows of 16 steps."""

    name: str
    length: int = 16
    chained: bool = False
    triggers: np.ndarray = field(default_factory=lambda: np.zeros((8, 16), bool))
    accents: np.ndarray = field(default_factory=lambda: np.zeros((8, 16), bool))
    fills: np.ndarray = field(default_factory=lambda: np.zeros((8, 16), bool))


@dataclass
class ChannelMap:
    """How one Microtonic channel was given a drum class (what the box and ``kit show`` display)."""

    channel: int          # 1..8
    name: str             # the patch name
    category: str         # what the name or the sound says it is: kick, snare, clap, hihat, ...
    drum: str             # the drum class it plays
    how: str              # "name", "pitch" or "position" (the last resort)


@dataclass
class Preset:
    """A parsed preset: the kit, its patterns, the global settings (raw strings) and the channel map."""

    kit: Kit
    patterns: dict[str, Pattern]
    settings: dict[str, str]
    channel_map: list[ChannelMap] = field(default_factory=list)


# ---- channels -> drum classes ------------------------------------------------------------------------
# Words in Microtonic patch names and category folders, most specific first.
_CATEGORY_WORDS = (
    ("openhat", ("oh", "open", "ohh", "opn")),
    ("hihat", ("ch", "hh", "hat", "hihat", "chh", "closed", "hi-hat", "hats")),
    ("ride", ("rd", "ride")),
    ("crash", ("cy", "cym", "cymbal", "crash", "splash", "china")),
    ("clap", ("cp", "clp", "clap", "claps")),
    ("rim", ("rs", "rim", "rimshot", "stick")),
    ("tom", ("tom", "lt", "mt", "ht", "toms")),
    ("kick", ("bd", "kick", "kik", "kck", "bass")),
    ("snare", ("sd", "snare", "snr", "sn")),
    ("perc", ("perc", "cabasa", "shaker", "shk", "cowbell", "cb", "conga", "bongo", "clave", "tamb",
              "tambourine", "maracas", "block", "zap", "fx")),
)
# Drum classes a category prefers, best first (every class is listed so an assignment always exists).
_PREFERENCE = {
    "kick": ("kick", "lowtom", "midtom", "hightom", "snare", "crash", "ride", "hihat", "openhat"),
    "snare": ("snare", "midtom", "hightom", "lowtom", "crash", "ride", "openhat", "hihat", "kick"),
    "clap": ("snare", "hightom", "midtom", "lowtom", "crash", "ride", "openhat", "hihat", "kick"),
    "rim": ("snare", "hightom", "midtom", "lowtom", "ride", "crash", "hihat", "openhat", "kick"),
    "hihat": ("hihat", "openhat", "ride", "crash", "hightom", "midtom", "snare", "lowtom", "kick"),
    "openhat": ("openhat", "hihat", "crash", "ride", "hightom", "midtom", "snare", "lowtom", "kick"),
    "crash": ("crash", "ride", "openhat", "hihat", "hightom", "midtom", "snare", "lowtom", "kick"),
    "ride": ("ride", "crash", "openhat", "hihat", "hightom", "midtom", "snare", "lowtom", "kick"),
    "perc": ("hightom", "midtom", "lowtom", "ride", "openhat", "crash", "hihat", "snare", "kick"),
}
_TOM_ORDER = ("lowtom", "midtom", "hightom")


def patch_category(name: str, path: str = "") -> str | None:
    """The category a patch's name (or its library folder) names, or None.

    Microtonic names start with the author's initials ("SC", "VT-808", "RD"), then the
    instrument ("BD", "SD", "CH", "CP", ...): the first word that names an instrument wins;
    the library folder ("By Category/Snare Drum Patches") answers when no word does.

    Examples
    --------
    >>> patch_category("VT-808 CP"), patch_category("SC CH Gringo"), patch_category("VT-MRK BD To Tom Tom")
    ('clap', 'hihat', 'kick')
    >>> patch_category("RD GSn", "./By Category/Snare Drum Patches/RD GSn.mtdrum")
    'snare'
    """
    def named(words):
        for w in words:
            for cat, keys in _CATEGORY_WORDS:
                if w in keys:
                    return cat
        return None

    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    # a leading "SC"/"RD"/"VT" is usually the author's initials ("RD GSn" is a snare, not a
    # ride): the other words and the library folder speak first, the first word last
    initials = len(words) > 1 and re.fullmatch(r"[A-Z]{2,3}", re.split(r"[^A-Za-z0-9]+", name.strip())[0] or "")
    cat = named(words[1:] if initials else words)
    if cat is not None:
        return cat
    folder = path.replace("\\", "/").lower()
    for key, cat in (("bass drum", "kick"), ("snare", "snare"), ("tom", "tom"), ("percussion", "perc"),
                     ("cymbal", "crash")):
        if key in folder:
            return cat
    return named(words[:1]) if initials else None


def sound_category(patch: Patch) -> str | None:
    """A guess from the sound when the name says nothing: low sine = kick, bright noise = hat, ...

    Examples
    --------
    >>> sound_category(Patch(oscFreq=50.0, mix=90.0, oscDcy=400.0))
    'kick'
    >>> sound_category(Patch(oscFreq=8000.0, mix=10.0, nFilFrq=9000.0, nEnvDcy=60.0))
    'hihat'
    """
    osc = patch.mix >= 50.0
    if osc and patch.oscFreq < 80.0:
        return "kick"
    if not osc and patch.nFilFrq >= 5000.0:
        return "hihat" if patch.nEnvDcy < 200.0 else "crash"
    if osc and patch.oscFreq < 400.0 and patch.mix >= 70.0:
        return "tom"
    if not osc or patch.mix < 60.0:
        return "snare"
    return None


def map_channels(channels: list[Channel], paths: list[str] | None = None) -> tuple[dict[str, int], list[ChannelMap]]:
    """Give each of the 8 channels its own drum class: by patch name, then by sound, position last.

    Every channel gets a distinct class (so every channel can be played); the ninth class
    shares the channel that suits it best.  Toms are ordered by pitch (the lowest plays the
    low tom).

    Returns
    -------
    mapping : drum class -> channel 1..8 (a :class:`Kit` mapping)
    rows : one :class:`ChannelMap` per channel, in channel order
    """
    from scipy.optimize import linear_sum_assignment

    from rolypoly.score.drums import DRUMS
    paths = paths or [""] * len(channels)
    cats = [patch_category(ch.name or ch.patch.name, path) for ch, path in zip(channels, paths)]
    hows = ["name" if c is not None else "position" for c in cats]
    if any(c is not None for c in cats):
        # a kit whose names say nothing at all keeps the positional layout it was made in;
        # in a named kit, the unnamed channels are judged by their sound
        for i, ch in enumerate(channels):
            if cats[i] is None:
                cats[i] = sound_category(ch.patch)
                hows[i] = "pitch" if cats[i] is not None else "position"
    toms = sorted((i for i, c in enumerate(cats) if c == "tom"), key=lambda i: channels[i].patch.oscFreq)
    prefs = []
    for i, cat in enumerate(cats):
        if cat == "tom":
            order = _TOM_ORDER[min(toms.index(i), 2):] + _TOM_ORDER[:min(toms.index(i), 2)][::-1]
            prefs.append(order + tuple(d for d in _PREFERENCE["perc"] if d not in order))
        elif cat is None:   # position: the Microtonic layout of the default kit
            default = next(k for k, v in DEFAULT_MAPPING.items() if v == i + 1)
            prefs.append((default,) + tuple(d for d in _PREFERENCE["perc"] if d != default))
        else:
            prefs.append(_PREFERENCE[cat])
    # ties go to the earlier channel (Microtonic's own layout puts the main drums first)
    # and a real snare takes the snare class before a clap or a rim shot does
    cost = np.array([[(p.index(d) + (0.5 if d == "snare" and cats[i] in ("clap", "rim") else 0.0))
                      * (1.0 + 0.01 * (len(prefs) - i)) for d in DRUMS] for i, p in enumerate(prefs)])
    rows_, cols = linear_sum_assignment(cost)
    mapping = {DRUMS[c]: int(r) + 1 for r, c in zip(rows_, cols)}
    for d in DRUMS:            # the class no channel took: the channel that ranks it highest
        if d not in mapping:
            best = min(range(len(channels)), key=lambda i: (prefs[i].index(d), i))
            mapping[d] = best + 1
    drum_of = {v: k for k, v in mapping.items() if k in [DRUMS[c] for c in cols]}
    table = [ChannelMap(i + 1, ch.name or ch.patch.name, cats[i] or "unknown", drum_of[i + 1], hows[i])
             for i, ch in enumerate(channels)]
    return {d: mapping[d] for d in DRUMS}, table


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def parse_blocks(text: str, where: str = "<preset>") -> dict:
    """Parse the nested block syntax into dicts of :class:`_Value` (with line numbers)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((i for i, l in enumerate(lines) if l.strip()), None)
    if first is None:
        raise PresetError(f"{where}: empty file")
    head = lines[first].strip()
    if not re.match(r'^"?Microtonic\w*"?\s*:\s*\{$', head):
        raise PresetError(f"{where}:{first + 1}: expected a header like 'MicrotonicPresetV3: {{', got {head[:60]!r}")
    root: dict = {}
    stack = [root]
    for i in range(first + 1, len(lines)):
        line = lines[i].strip()
        no = i + 1
        if not line:
            continue
        if line == "}":
            if len(stack) == 1:
                if any(l.strip() for l in lines[i + 1:]):
                    raise PresetError(f"{where}:{no}: text after the closing brace of the preset")
                stack.pop()
                break
            stack.pop()
            continue
        m = re.match(r'^("[^"]*"|[A-Za-z_][\w]*)\s*:\s*(.*)$', line)
        if not m:
            raise PresetError(f"{where}:{no}: expected 'Key: value', got {line[:60]!r}")
        key, rest = _unquote(m.group(1)), m.group(2).strip()
        if key in stack[-1]:
            raise PresetError(f"{where}:{no}: key {key!r} appears twice in the same block")
        if rest == "{":
            stack[-1][key] = {}
            stack.append(stack[-1][key])
        elif rest.startswith("{"):
            if not rest.endswith("}"):
                raise PresetError(f"{where}:{no}: list for {key!r} is not closed on the same line")
            items = [x.strip() for x in rest[1:-1].split(",") if x.strip()]
            stack[-1][key] = [_Value(_unquote(x), no) for x in items]
        elif rest == "":
            raise PresetError(f"{where}:{no}: key {key!r} has no value")
        else:
            if rest.count('"') % 2:
                raise PresetError(f"{where}:{no}: unbalanced quotes in {rest[:60]!r}")
            stack[-1][key] = _Value(_unquote(rest), no)
    if stack:
        raise PresetError(f"{where}: file ends inside a block ({len(stack)} unclosed brace(s))")
    return root


def _number(v: _Value, where: str, key: str, units: tuple[str, ...] = ("",)) -> tuple[float, str]:
    m = re.match(rf"^({_NUM})\s*(%|[A-Za-z]*)$", v.text.strip(), re.IGNORECASE)
    if not m:
        raise PresetError(f"{where}:{v.line}: {key} = {v.text!r} is not a number with a unit")
    unit = m.group(2).lower()
    if unit not in units:
        raise PresetError(f"{where}:{v.line}: {key} = {v.text!r} has unit {unit or 'none'!r}, "
                          f"expected {' or '.join(repr(u) or 'none' for u in units)}")
    x = float(m.group(1))
    if math.isnan(x):
        raise PresetError(f"{where}:{v.line}: {key} is NaN")
    return x, unit


def _choice(v: _Value, table: dict, where: str, key: str) -> int:
    t = v.text.strip().lower()
    if t not in table:
        raise PresetError(f"{where}:{v.line}: {key} = {v.text!r}; expected one of {', '.join(table)}")
    return table[t]


def _get(block: dict, key: str, where: str, line: int) -> _Value:
    v = block.get(key)
    if v is None:
        raise PresetError(f"{where}:{line}: drum patch lacks {key}")
    if not isinstance(v, _Value):
        raise PresetError(f"{where}:{line}: {key} should be a single value")
    return v


def _patch(block: dict, where: str, line: int) -> tuple[Patch, float, int]:
    """One DrumPatches entry -> (Patch, pan -1..1, choke 0/1)."""
    g = lambda k: _get(block, k, where, line)  # noqa: E731
    p: dict = {"name": g("Name").text if "Name" in block else ""}
    p["oscWave"] = _choice(g("OscWave"), WAVES, where, "OscWave")
    p["oscFreq"] = _number(g("OscFreq"), where, "OscFreq", ("hz",))[0]
    p["oscAtk"] = _number(g("OscAtk"), where, "OscAtk", ("ms",))[0]
    p["oscDcy"] = _number(g("OscDcy"), where, "OscDcy", ("ms",))[0]
    p["modMode"] = _choice(g("ModMode"), MOD_MODES, where, "ModMode")
    rate, unit = _number(g("ModRate"), where, "ModRate", ("ms", "hz"))
    if unit == "ms":   # a decay time: rate = 1000 / ms, and "inf ms" never decays
        rate = 0.0 if math.isinf(rate) else (1000.0 / rate if rate > 0 else SPECS["modRate"][1])
    p["modRate"] = rate
    p["modAmt"] = _number(g("ModAmt"), where, "ModAmt", ("sm", ""))[0]
    p["nFilMod"] = _choice(g("NFilMod"), FILTERS, where, "NFilMod")
    p["nFilFrq"] = _number(g("NFilFrq"), where, "NFilFrq", ("hz",))[0]
    p["nFilQ"] = _number(g("NFilQ"), where, "NFilQ")[0]
    p["nStereo"] = _choice(g("NStereo"), ON_OFF, where, "NStereo")
    p["nEnvMod"] = _choice(g("NEnvMod"), NOISE_ENVS, where, "NEnvMod")
    p["nEnvAtk"] = _number(g("NEnvAtk"), where, "NEnvAtk", ("ms",))[0]
    dcy = _number(g("NEnvDcy"), where, "NEnvDcy", ("ms",))[0]
    p["nEnvDcy"] = SPECS["nEnvDcy"][1] if math.isinf(dcy) else dcy   # "inf ms": as long as we allow
    mv = g("Mix")
    m = re.match(rf"^({_NUM})\s*/\s*({_NUM})$", mv.text.strip())
    if not m:
        raise PresetError(f"{where}:{mv.line}: Mix = {mv.text!r}; expected 'osc / noise'")
    p["mix"] = float(m.group(1))
    p["distAmt"] = _number(g("DistAmt"), where, "DistAmt")[0]
    p["eQFreq"] = _number(g("EQFreq"), where, "EQFreq", ("hz",))[0]
    p["eQGain"] = _number(g("EQGain"), where, "EQGain", ("db",))[0]
    p["level"] = _number(g("Level"), where, "Level", ("db",))[0]
    for k, name in (("OscVel", "oscVel"), ("NVel", "nVel"), ("ModVel", "modVel")):
        p[name] = _number(g(k), where, k, ("%", ""))[0]
    for k in ("oscFreq", "oscAtk", "oscDcy", "modAmt", "nFilFrq", "nFilQ", "nEnvAtk", "distAmt",
              "eQFreq", "eQGain", "oscVel", "nVel", "modVel", "mix"):
        if math.isinf(p[k]):
            raise PresetError(f"{where}:{line}: {k} is infinite")
    pan = _number(block["Pan"], where, "Pan")[0] / 100.0 if "Pan" in block else 0.0
    choke = _choice(block["Choke"], ON_OFF, where, "Choke") if "Choke" in block else 0
    try:
        patch = Patch.from_dict(p, where=f"{where}:{line}")
    except SynthError as exc:
        raise PresetError(str(exc)) from None
    return patch, max(-1.0, min(1.0, pan)), choke


def _steps(v, where: str, key: str) -> np.ndarray:
    if not isinstance(v, _Value) or not re.fullmatch(rf"[#\-]{{1,{MAX_STEPS}}}", v.text):
        line = v.line if isinstance(v, _Value) else "?"
        raise PresetError(f"{where}:{line}: {key} must be a string of '#' and '-'")
    return np.array([ch == "#" for ch in v.text], bool)


def read_mtpreset(path: str | Path) -> Preset:
    """Read a ``.mtpreset`` file into a :class:`Preset` (kit + patterns + settings)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_PRESET_BYTES:
            raise PresetError(f"{path}: {path.stat().st_size} bytes is too large for a preset "
                              f"(at most {MAX_PRESET_BYTES})")
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise PresetError(f"{path}: no such file") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise PresetError(f"{path}: cannot read ({exc})") from None
    where = str(path)
    root = parse_blocks(text, where)
    drums = root.get("DrumPatches")
    if not isinstance(drums, dict):
        raise PresetError(f"{where}: no DrumPatches block")
    channels: list[Channel | None] = [None] * 8
    paths = [""] * 8
    for key, block in drums.items():
        if key not in {str(i) for i in range(1, 9)} or not isinstance(block, dict):
            raise PresetError(f"{where}: DrumPatches has an entry {key!r}; expected blocks \"1\"..\"8\"")
        line = min((v.line for v in block.values() if isinstance(v, _Value)), default=0)
        patch, pan, choke = _patch(block, where, line)
        channels[int(key) - 1] = Channel(patch=patch, pan=pan, choke=choke, name=patch.name)
        if isinstance(block.get("Path"), _Value):
            paths[int(key) - 1] = block["Path"].text
    missing = [str(i + 1) for i, c in enumerate(channels) if c is None]
    if missing:
        raise PresetError(f"{where}: DrumPatches lacks channel(s) {', '.join(missing)}")
    settings = {k: v.text for k, v in root.items() if isinstance(v, _Value)}
    patterns: dict[str, Pattern] = {}
    for name, block in (root.get("Patterns") or {}).items():
        if not isinstance(block, dict):
            raise PresetError(f"{where}: pattern {name!r} is not a block")
        pat = Pattern(name=name)
        if name not in PATTERN_NAMES:
            raise PresetError(f"{where}: pattern {name!r}; patterns are named a..l")
        if "Length" in block:
            pat.length = int(_number(block["Length"], where, f"pattern {name} Length")[0])
            if not 1 <= pat.length <= MAX_STEPS:
                raise PresetError(f"{where}:{block['Length'].line}: pattern {name} Length {pat.length} "
                                  f"outside 1..{MAX_STEPS}")
        if "Chained" in block:
            pat.chained = bool(_choice(block["Chained"], ON_OFF, where, f"pattern {name} Chained"))
        for ch in range(1, 9):
            row = block.get(str(ch))
            if row is None:
                continue
            for attr, key in (("triggers", "Triggers"), ("accents", "Accents"), ("fills", "Fills")):
                if key in row:
                    steps = _steps(row[key], where, f"pattern {name} channel {ch} {key}")
                    arr = getattr(pat, attr)
                    if len(steps) != arr.shape[1]:
                        setattr(pat, attr, arr := np.zeros((8, max(len(steps), arr.shape[1])), bool))
                    arr[ch - 1, :len(steps)] = steps
        patterns[name] = pat
    mapping, table = map_channels(channels, paths)  # type: ignore[arg-type]
    kit = Kit(name=path.stem, channels=channels, mapping=mapping)  # type: ignore[arg-type]
    return Preset(kit=kit, patterns=patterns, settings=settings, channel_map=table)

