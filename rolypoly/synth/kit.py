"""Kits: 8 Microtonic-style channels, a drum-class mapping, choke groups, TOML files.

A :class:`Kit` has a name, 8 :class:`Channel` s (patch, pan -1..1, choke group;
0 = none) and a mapping from the 9 drum classes to channels, with an optional
tuning offset per class (so mid tom can share the low tom's channel a few
semitones up).  Kits are stored as TOML (read with :mod:`tomllib`, written by
:func:`save_kit`); :func:`rolypoly.synth.load_kit` also takes a ``.mtpreset`` directly.

Examples
--------
>>> kit = read_kit(None)                 # our default kit
>>> kit.class_channel(DRUMS.index("snare"))
1
>>> _ = save_kit(kit, "/tmp/k.toml"); read_kit("/tmp/k.toml").name == kit.name
True
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rolypoly.errors import SynthError
from rolypoly.score.drums import DRUMS
from rolypoly.synth.patch import SPECS, Patch

N_CHANNELS = 8
# Microtonic-like default slot layout (channel numbers 1..8 in files, 0..7 here)
DEFAULT_MAPPING = {"kick": 1, "snare": 2, "hihat": 3, "openhat": 4, "lowtom": 5, "midtom": 6,
                   "hightom": 7, "crash": 8, "ride": 8}


def default_kit_path() -> Path:
    return Path(__file__).resolve().parents[2] / "data" / "default_kit.toml"


@dataclass
class Channel:
    """One of a kit's 8 channels."""

    patch: Patch = field(default_factory=Patch)
    pan: float = 0.0
    choke: int = 0
    name: str = ""


@dataclass
class Kit:
    """A drum kit: 8 channels and a mapping of the 9 drum classes onto them."""

    name: str = "kit"
    channels: list[Channel] = field(default_factory=lambda: [Channel() for _ in range(N_CHANNELS)])
    mapping: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAPPING))
    tune: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.channels) != N_CHANNELS:
            raise SynthError(f"kit {self.name!r}: {len(self.channels)} channels; a kit has {N_CHANNELS}")
        for key, ch in self.mapping.items():
            if key not in DRUMS:
                raise SynthError(f"kit {self.name!r}: mapping names unknown drum {key!r} (known: {', '.join(DRUMS)})")
            if not isinstance(ch, int) or isinstance(ch, bool) or not 1 <= ch <= N_CHANNELS:
                raise SynthError(f"kit {self.name!r}: mapping.{key} = {ch!r}; expected a channel 1..{N_CHANNELS}")
        for key, st in self.tune.items():
            if key not in DRUMS or not isinstance(st, (int, float)) or not math.isfinite(st) or abs(st) > 48:
                raise SynthError(f"kit {self.name!r}: tune.{key} = {st!r}; expected a drum name and -48..48 semitones")
        for i, ch in enumerate(self.channels):
            if not -1.0 <= ch.pan <= 1.0 or math.isnan(ch.pan):
                raise SynthError(f"kit {self.name!r}: channel {i + 1} pan {ch.pan} outside -1..1")
            if not isinstance(ch.choke, int) or ch.choke < 0:
                raise SynthError(f"kit {self.name!r}: channel {i + 1} choke {ch.choke!r}; expected 0 (none) or a group >= 1")

    def class_channel(self, drum: int) -> int:
        """0-based channel index of drum class ``drum`` (0..8)."""
        return self.mapping.get(DRUMS[drum], DEFAULT_MAPPING[DRUMS[drum]]) - 1

    def class_patch(self, drum: int) -> Patch:
        """The patch a drum class plays (its channel's patch, tuned by ``tune``)."""
        patch = self.channels[self.class_channel(drum)].patch
        st = self.tune.get(DRUMS[drum], 0.0)
        if st:
            lo, hi, _ = SPECS["oscFreq"]
            patch = replace(patch, oscFreq=min(max(patch.oscFreq * 2 ** (st / 12), lo), hi))
        return patch

    def class_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per class: params (9, N_PARAMS), pan gains (9, 2) and choke groups (9,) for the renderers."""
        params = np.stack([self.class_patch(d).to_array() for d in range(len(DRUMS))])
        pans = np.zeros((len(DRUMS), 2))
        groups = np.zeros(len(DRUMS), np.int64)
        for d in range(len(DRUMS)):
            ch = self.channels[self.class_channel(d)]
            # equal-power pan, unity in the middle so a centred voice is not attenuated
            angle = (ch.pan + 1.0) * math.pi / 4.0
            pans[d] = math.sqrt(2) * math.cos(angle), math.sqrt(2) * math.sin(angle)
            groups[d] = ch.choke
        return params, pans, groups


# ---- TOML ------------------------------------------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    s = "".join(ch if ch >= " " else f"\\u{ord(ch):04x}" for ch in s)   # TOML forbids raw control chars
    return f'"{s}"'


def kit_to_toml(kit: Kit) -> str:
    """The TOML text of a kit (what :func:`save_kit` writes)."""
    out = ["# rolypoly drum kit (supertonic engine). Parameters: see rolypoly/synth/patch.py.",
           f"name = {_toml_value(kit.name)}", "",
           "# drum class -> channel (1..8)", "[mapping]"]
    out += [f"{k} = {kit.mapping.get(k, DEFAULT_MAPPING[k])}" for k in DRUMS]
    if kit.tune:
        out += ["", "# per-class tuning offset in semitones (oscillator frequency)", "[tune]"]
        out += [f"{k} = {_toml_value(float(v))}" for k, v in kit.tune.items()]
    for i, ch in enumerate(kit.channels):
        out += ["", "[[channel]]", f"# channel {i + 1}", f"name = {_toml_value(ch.name or ch.patch.name)}",
                f"pan = {_toml_value(float(ch.pan))}", f"choke = {int(ch.choke)}", "[channel.patch]"]
        for k in SPECS:
            out.append(f"{k} = {_toml_value(getattr(ch.patch, k))}")
    return "\n".join(out) + "\n"


def save_kit(kit: Kit, path: str | Path) -> Path:
    """Write ``kit`` as TOML to ``path`` (atomically)."""
    from rolypoly.io import write_text
    return write_text(path, kit_to_toml(kit))


def kit_from_dict(d: dict, where: str) -> Kit:
    """Build a kit from parsed TOML (tables: name, mapping, tune, channel[])."""
    unknown = sorted(set(d) - {"name", "mapping", "tune", "channel"})
    if unknown:
        raise SynthError(f"{where}: unknown key(s) {', '.join(unknown)}")
    chans = d.get("channel", [])
    if not isinstance(chans, list) or len(chans) != N_CHANNELS:
        raise SynthError(f"{where}: needs exactly {N_CHANNELS} [[channel]] tables, found "
                         f"{len(chans) if isinstance(chans, list) else 'none'}")
    channels = []
    for i, c in enumerate(chans):
        w = f"{where}: channel {i + 1}"
        extra = sorted(set(c) - {"name", "pan", "choke", "patch"})
        if extra:
            raise SynthError(f"{w}: unknown key(s) {', '.join(extra)}")
        pan, choke = c.get("pan", 0.0), c.get("choke", 0)
        if not isinstance(pan, (int, float)) or isinstance(pan, bool):
            raise SynthError(f"{w}: pan must be a number")
        if not isinstance(choke, int) or isinstance(choke, bool):
            raise SynthError(f"{w}: choke must be an integer group (0 = none)")
        patch = Patch.from_dict(c.get("patch", {}), where=f"{w} patch")
        channels.append(Channel(patch=patch, pan=float(pan), choke=choke, name=str(c.get("name", patch.name))))
    mapping = dict(DEFAULT_MAPPING)
    mapping.update(d.get("mapping", {}))
    return Kit(name=str(d.get("name", Path(where).stem)), channels=channels, mapping=mapping,
               tune=dict(d.get("tune", {})))


def kit_path(path: str | Path | None = None) -> Path:
    """Where a kit setting points: ``None`` = our default kit; ``~`` expanded; a relative path
    that does not exist here is tried relative to the repository (config values such as
    ``data/default_kit.toml``)."""
    if path is None:
        return default_kit_path()
    path = Path(path).expanduser()
    if not path.is_absolute() and not path.exists():
        repo_relative = default_kit_path().parents[1] / path
        if repo_relative.exists():
            return repo_relative
    return path


def read_kit(path: str | Path | None = None) -> Kit:
    """Read one of our ``.toml`` kit files (``None`` = our default kit).

    Raises
    ------
    SynthError
        The file is missing, does not parse, or holds invalid values (message names it).
    """
    path = kit_path(path)
    if not path.is_file():
        raise SynthError(f"kit file {path} does not exist")
    if path.stat().st_size > 1 << 20:  # a kit is a few kB of TOML
        raise SynthError(f"kit file {path}: {path.stat().st_size} bytes is too large for a kit")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SynthError(f"kit file {path} does not parse: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SynthError(f"cannot read kit file {path}: {exc}") from None
    return kit_from_dict(data, str(path))
