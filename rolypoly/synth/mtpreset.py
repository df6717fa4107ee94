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
from rolypoly.synth.kit import Channel, Kit
from rolypoly.synth.patch import SPECS, Patch

WAVES = {"sine": 0, "triangle": 1, "saw": 2}
MOD_MODES = {"decay": 0, "sine": 1, "noise": 2}
FILTERS = {"lp": 0, "bp": 1, "hp": 2}
NOISE_ENVS = {"exp": 0, "linear": 1, "mod": 2}
ON_OFF = {"on": 1, "off": 0, "true": 1, "false": 0}
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
class Preset:
    """A parsed preset: the kit, its patterns and the global settings (raw strings)."""

    kit: Kit
    patterns: dict[str, Pattern]
    settings: dict[str, str]


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
    if not isinstance(v, _Value) or not re.fullmatch(r"[#\-]{1,64}", v.text):
        line = v.line if isinstance(v, _Value) else "?"
        raise PresetError(f"{where}:{line}: {key} must be a string of '#' and '-'")
    return np.array([ch == "#" for ch in v.text], bool)


def read_mtpreset(path: str | Path) -> Preset:
    """Read a ``.mtpreset`` file into a :class:`Preset` (kit + patterns + settings)."""
    path = Path(path)
    try:
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
    for key, block in drums.items():
        if key not in {str(i) for i in range(1, 9)} or not isinstance(block, dict):
            raise PresetError(f"{where}: DrumPatches has an entry {key!r}; expected blocks \"1\"..\"8\"")
        line = min((v.line for v in block.values() if isinstance(v, _Value)), default=0)
        patch, pan, choke = _patch(block, where, line)
        channels[int(key) - 1] = Channel(patch=patch, pan=pan, choke=choke, name=patch.name)
    missing = [str(i + 1) for i, c in enumerate(channels) if c is None]
    if missing:
        raise PresetError(f"{where}: DrumPatches lacks channel(s) {', '.join(missing)}")
    settings = {k: v.text for k, v in root.items() if isinstance(v, _Value)}
    patterns: dict[str, Pattern] = {}
    for name, block in (root.get("Patterns") or {}).items():
        if not isinstance(block, dict):
            raise PresetError(f"{where}: pattern {name!r} is not a block")
        pat = Pattern(name=name)
        if "Length" in block:
            pat.length = int(_number(block["Length"], where, f"pattern {name} Length")[0])
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
    kit = Kit(name=path.stem, channels=channels)  # type: ignore[arg-type]
    return Preset(kit=kit, patterns=patterns, settings=settings)

