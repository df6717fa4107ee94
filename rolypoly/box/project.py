"""Box projects (kit + patterns + settings, one TOML file), presets into the box, and exports.

A project file holds everything :class:`~rolypoly.box.model.Box` needs to come back as it
was: the settings, the mixer, the channel -> drum assignment, the kit (and the morph's
second kit) in our kit format, and the twelve patterns as step strings::

    format = 1
    bpm = 120.0
    step_rate = "1/16"
    ...
    [patterns.a]
    length = 16
    chained = false
    triggers = ["x---x---x---x---", "----x-------x---", ...]    # 8 channels

Saving is atomic and never replaces an existing file unless asked (``force``).

Examples
--------
>>> from rolypoly.box.model import Box
>>> box = Box(); _ = box.toggle(0, 0)
>>> path = save_project(box, "/tmp/doc_box.toml", force=True)
>>> load_project(path).pattern.grid(0)
'x---------------'
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from rolypoly.box.model import (
    FILL_RATES,
    MAX_STEPS,
    N_CHANNELS,
    PATTERN_NAMES,
    STEP_RATES,
    Box,
    BoxError,
    Pattern,
)

FORMAT = 1


# -- a small TOML writer (tables, arrays of tables, scalar lists) ----------------------------
def _value(v) -> str:
    from rolypoly.synth.kit import _toml_value
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, (np.bool_,)):
        v = bool(v)
    if isinstance(v, (np.integer,)):
        v = int(v)
    if isinstance(v, (np.floating,)):
        v = float(v)
    return _toml_value(v)


def to_toml(d: dict, prefix: str = "") -> str:
    """TOML text of a nested dict (dicts become tables, lists of dicts arrays of tables)."""
    lines, tables = [], []
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v, False))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append((k, v, True))
        else:
            lines.append(f"{k} = {_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v, many in tables:
        name = f"{prefix}{k}"
        for item in (v if many else [v]):
            out += f"\n[[{name}]]\n" if many else f"\n[{name}]\n"
            out += to_toml(item, prefix=f"{name}.")
    return out


def _kit_dict(kit) -> dict:
    from rolypoly.score.drums import DRUMS
    from rolypoly.synth.patch import SPECS
    return {"name": kit.name, "mapping": {d: kit.mapping.get(d) for d in DRUMS if d in kit.mapping},
            "tune": dict(kit.tune) or None,
            "channel": [{"name": c.name or c.patch.name, "pan": float(c.pan), "choke": int(c.choke),
                         "patch": {"name": c.patch.name, **{k: getattr(c.patch, k) for k in SPECS}}}
                        for c in kit.channels]}


def _steps_text(row: np.ndarray, n: int) -> str:
    return "".join("x" if v else "-" for v in row[:n])


def project_dict(box: Box) -> dict:
    d = {"format": FORMAT, "bpm": float(box.bpm), "step_rate": box.step_rate, "swing": float(box.swing),
         "fill_rate": int(box.fill_rate), "current": box.current, "morph": float(box.morph),
         "humanize": bool(box.humanize), "basis": int(box.basis),
         "channel_drums": [int(x) for x in box.channel_drums],
         "mix": {"mute": list(map(bool, box.mix.mute)), "solo": list(map(bool, box.mix.solo)),
                 "level": [float(x) for x in box.mix.level], "pan": [float(x) for x in box.mix.pan],
                 "choke": [int(x) for x in box.mix.choke]},
         "kit": _kit_dict(box.kit)}
    if box.kit_b is not None:
        d["kit_b"] = _kit_dict(box.kit_b)
    d["patterns"] = {n: {"length": p.length, "chained": bool(p.chained),
                         "triggers": [_steps_text(p.triggers[c], p.length) for c in range(N_CHANNELS)],
                         "accents": [_steps_text(p.accents[c], p.length) for c in range(N_CHANNELS)],
                         "fills": [_steps_text(p.fills[c], p.length) for c in range(N_CHANNELS)]}
                     for n, p in box.patterns.items()}
    return d


def save_project(box: Box, path, force: bool = False) -> Path:
    """Write ``box`` to ``path`` (``.toml``), atomically; an existing file only with ``force``."""
    from rolypoly.io import atomic_path, check_output
    path = check_output(path, force=force, suffixes=(".toml",), what="project file")
    text = "# rolypoly box project: kit, patterns and settings\n" + to_toml(project_dict(box))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path


def _get(d: dict, key: str, kind, where: str, default=None):
    if key not in d:
        if default is not None:
            return default
        raise BoxError(f"{where}: missing {key}")
    v = d[key]
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise BoxError(f"{where}: {key} = {v!r} should be {kind.__name__}")
    return v


def _row(text, n: int, where: str) -> np.ndarray:
    if not isinstance(text, str) or len(text) != n or set(text) - set("x-"):
        raise BoxError(f"{where}: expected {n} characters of x and -, got {text!r}")
    row = np.zeros(MAX_STEPS, bool)
    row[:n] = [c == "x" for c in text]
    return row


def project_from_dict(d: dict, where: str) -> Box:
    from rolypoly.errors import SynthError
    from rolypoly.synth.kit import kit_from_dict
    if d.get("format") != FORMAT:
        raise BoxError(f"{where}: format {d.get('format')!r}; this rolypoly reads box projects of format {FORMAT}")
    try:
        kit = kit_from_dict(_get(d, "kit", dict, where), f"{where} [kit]")
        kit_b = kit_from_dict(d["kit_b"], f"{where} [kit_b]") if "kit_b" in d else None
    except SynthError as exc:
        raise BoxError(str(exc)) from None
    drums = _get(d, "channel_drums", list, where)
    if len(drums) != N_CHANNELS or not all(isinstance(x, int) and -1 <= x < 9 for x in drums):
        raise BoxError(f"{where}: channel_drums must list {N_CHANNELS} drum classes 0..8")
    box = Box(kit, channel_drums=drums)
    box.kit_b = kit_b
    try:
        box.set_bpm(_get(d, "bpm", float, where))
        box.set_step_rate(_get(d, "step_rate", str, where))
        box.set_swing(_get(d, "swing", float, where))
        box.set_fill_rate(_get(d, "fill_rate", int, where))
        box.set_morph(_get(d, "morph", float, where, 0.0))
    except BoxError as exc:
        raise BoxError(f"{where}: {exc}") from None
    box.humanize = bool(d.get("humanize", False))
    box.basis = int(d.get("basis", 0)) % N_CHANNELS
    mix = _get(d, "mix", dict, where)
    for key, kind in (("mute", bool), ("solo", bool), ("level", float), ("pan", float), ("choke", int)):
        vals = mix.get(key)
        if not isinstance(vals, list) or len(vals) != N_CHANNELS:
            raise BoxError(f"{where}: mix.{key} must list {N_CHANNELS} values")
        for ch, v in enumerate(vals):
            try:
                box.set_mix(key, ch, v)
            except (BoxError, TypeError, ValueError) as exc:
                raise BoxError(f"{where}: mix.{key}[{ch + 1}]: {exc}") from None
    pats = _get(d, "patterns", dict, where)
    for name, p in pats.items():
        w = f"{where} [patterns.{name}]"
        if name not in PATTERN_NAMES or not isinstance(p, dict):
            raise BoxError(f"{w}: patterns are tables a..l")
        n = _get(p, "length", int, w)
        if not 1 <= n <= MAX_STEPS:
            raise BoxError(f"{w}: length {n} outside 1..{MAX_STEPS}")
        pat = Pattern(name, length=n, chained=bool(p.get("chained", False)))
        for key, arr in (("triggers", pat.triggers), ("accents", pat.accents), ("fills", pat.fills)):
            rows = p.get(key, ["-" * n] * N_CHANNELS)
            if not isinstance(rows, list) or len(rows) != N_CHANNELS:
                raise BoxError(f"{w}: {key} must list {N_CHANNELS} step strings")
            for ch, text in enumerate(rows):
                arr[ch] = _row(text, n, f"{w} {key}[{ch + 1}]")
        box.patterns[name] = pat
    cur = d.get("current", "a")
    box.current = cur if cur in PATTERN_NAMES else "a"
    box._undo.clear()
    box.last_action = ""
    return box


def load_project(path) -> Box:
    """Read a project file written by :func:`save_project`.

    Raises
    ------
    BoxError
        Missing, unparsable, or holding invalid values (the message names file and field).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BoxError(f"project file {path} does not exist")
    try:
        d = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BoxError(f"project file {path} does not parse: {exc}") from None
    return project_from_dict(d, str(path))


def box_from_preset(path) -> tuple[Box, list]:
    """A box holding a ``.mtpreset``'s kit, patterns (a..l) and settings; also the channel map."""
    from rolypoly.score.drums import DRUM_INDEX
    from rolypoly.synth.mtpreset import read_mtpreset
    preset = read_mtpreset(path)
    drums = [DRUM_INDEX[r.drum] for r in preset.channel_map]
    box = Box(preset.kit, channel_drums=drums)
    for name, p in preset.patterns.items():
        if name not in PATTERN_NAMES:
            continue
        pat = Pattern(name, length=int(p.length), chained=bool(p.chained))
        for src, dst in ((p.triggers, pat.triggers), (p.accents, pat.accents), (p.fills, pat.fills)):
            n = min(src.shape[1], MAX_STEPS)
            dst[:, :n] = src[:, :n]
        box.patterns[name] = pat
    s = preset.settings
    rate = s.get("StepRate", "1/16").strip()
    if rate.lower() in {k.lower(): k for k in STEP_RATES}:
        box.step_rate = {k.lower(): k for k in STEP_RATES}[rate.lower()]
    try:
        box.swing = min(100.0, max(0.0, float(s.get("Swing", "0").rstrip("%").strip())))
    except ValueError:
        pass
    try:
        fr = int(round(float(s.get("FillRate", "0").lower().rstrip("x").strip())))
        box.fill_rate = fr if fr in FILL_RATES else 0
    except ValueError:
        pass
    if s.get("Pattern") in PATTERN_NAMES:
        box.current = s["Pattern"]
    box._undo.clear()
    return box, preset.channel_map


def open_any(path=None) -> tuple[Box, list]:
    """A box from a project (``.toml`` with patterns), a ``.mtpreset``, a kit file, or nothing (default kit)."""
    if path is None:
        return Box(), []
    p = Path(path).expanduser()
    if p.suffix.lower() == ".mtpreset":
        return box_from_preset(p)
    if p.suffix.lower() == ".toml" and p.is_file():
        try:
            head = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BoxError(f"{p} does not parse: {exc}") from None
        if "patterns" in head:
            return project_from_dict(head, str(p)), []
    from rolypoly.synth import load_kit
    return Box(load_kit(p)), []


def export_midi(box: Box, path, sequence: list[str] | None = None, sr: int = 48000, force: bool = False) -> Path:
    """The pattern's chain (or ``sequence``) as a General MIDI drum file (channel 10, our pitch map)."""
    from rolypoly.box.player import box_score
    from rolypoly.io import check_output
    path = check_output(path, force=force, suffixes=(".mid", ".midi"), what="MIDI file")
    return box_score(box, sequence or box.chain(), sr).write_midi(path)


def export_wav(box: Box, cfg, path, sequence: list[str] | None = None, sr: int = 48000, force: bool = False,
               takes_dir=None) -> Path:
    """The pattern's chain (or ``sequence``) rendered through the engine to a WAV file."""
    from rolypoly.box.player import render_offline
    from rolypoly.io import check_output, write_wav
    path = check_output(path, force=force, suffixes=(".wav",), what="WAV file")
    audio, _, _ = render_offline(box, cfg, sequence, sr=sr, takes_dir=takes_dir)
    return write_wav(path, audio, sr)
