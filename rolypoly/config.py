"""Configuration: one schema (types, ranges, defaults) checked on every value, from any door.

The schema is the dataclasses below: each group of ``configs/`` (``audio``, ``engine``, ...)
has one, each field a type, a default and, where it matters, a range or a list of choices.
``configs/*.yaml`` hold the same keys with the same defaults (a test keeps the two in step)
plus the documentation users read; the composed config is checked against the schema by
:func:`load_config`, and everything else that sets a value (the OSC bridge, the engine's
``set`` message) checks it with :func:`check_value`, so the command line, OSC and Max/Pd
accept and refuse the same things.

Overrides on the command line are ``key=value``:

- ``key`` is a group (``model=rolypoly_v2`` picks ``configs/model/rolypoly_v2.yaml``) or a
  dotted key path of the composed config (``synth.polyphony=8``);
- the value is taken literally for text and path keys (``data.root=~/groove``,
  ``synth.kit=my (old) kit.toml`` need no quoting; ``~`` is expanded), read as YAML for
  lists (``engine.generate_vels=[0.2,0.9]``), converted to the key's type otherwise;
  ``null`` means "none" where a key allows it.

Relative paths written in ``configs/`` are taken from the checkout (so every command agrees
on ``outputs_dir``, the user data folder, wherever it is run from); relative paths given as
overrides are taken from the current directory.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rolypoly.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


# -- the schema ------------------------------------------------------------------------------------
def opt(default, lo=None, hi=None, choices=None, path=False, length=None, doc=""):
    """A schema field: a default and its checks (``lo``/``hi`` inclusive, ``choices``, ``length`` of lists).

    ``path=True`` marks a file or folder: ``~`` is expanded, and a relative path from
    ``configs/`` is taken from the checkout.
    """
    meta = {"lo": lo, "hi": hi, "choices": tuple(choices) if choices else None, "path": path,
            "length": length, "doc": doc}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Data:
    root: str = opt("data/groove", path=True, doc="GMD root (holds info.csv)")
    fallback_root: Optional[str] = opt("../shared/data/groove", path=True)
    min_duration_s: float = opt(5.0, 0.0, 3600.0)
    merge_tolerance_ms: float = opt(10.0, 0.0, 100.0)


@dataclass
class Model:
    name: str = opt("rolypoly")
    n_enc_layers: int = opt(6, 1, 64)
    n_dec_layers: int = opt(6, 1, 64)
    n_heads: int = opt(16, 1, 64)
    d_model: int = opt(64, 8, 4096)
    d_ff: int = opt(256, 8, 16384)
    window: int = opt(16, 1, 1024)
    dropout: float = opt(0.1, 0.0, 0.9)


@dataclass
class IncrementalModel(Model):
    span: int = opt(16, 1, 1024, doc="rows each decoder layer attends back")
    enc_ahead: int = opt(16, 0, 1024, doc="rows each encoder layer attends ahead")


@dataclass
class EventsTrain:
    out_dir: str = opt("runs/events_joint", path=True)
    max_steps: int = opt(5000, 0, 10_000_000)
    batch_size: int = opt(32, 1, 65536)
    lr: float = opt(0.002, 0.0, 1.0)
    weight_decay: float = opt(0.05, 0.0, 1.0)
    warmup_steps: int = opt(200, 0, 10_000_000)
    min_lr_ratio: float = opt(0.05, 0.0, 1.0)
    grad_clip: float = opt(1.0, 0.0, 1000.0)
    vel_weight: float = opt(0.5, 0.0, 100.0)
    log_every: int = opt(50, 1, 1_000_000)
    eval_every: int = opt(250, 1, 1_000_000)
    eval_batches: int = opt(20, 1, 100_000)
    checkpoint_every: int = opt(250, 1, 1_000_000)
    threads: int = opt(1, 0, 1024)


@dataclass
class EventsModel:
    name: str = opt("events")
    kind: str = opt("events", choices=("events",))
    d_model: int = opt(96, 8, 4096)
    hidden: int = opt(128, 8, 4096)
    n_layers: int = opt(2, 1, 64)
    dropout: float = opt(0.3, 0.0, 0.9)
    window: int = opt(96, 1, 100_000)
    drum_head: str = opt("joint", choices=("independent", "joint"), doc="joint: one distribution over drum combinations")
    train: EventsTrain = field(default_factory=EventsTrain)


@dataclass
class Train:
    out_dir: str = opt("runs/pretrain", path=True)
    data: str = opt("gmd", choices=("gmd", "synthetic"))
    grids: list[str] = opt(["16+24", "16"])
    max_steps: int = opt(6000, 0, 10_000_000)
    batch_size: int = opt(64, 1, 65536)
    lr: float = opt(0.001, 0.0, 1.0)
    weight_decay: float = opt(0.01, 0.0, 1.0)
    warmup_steps: int = opt(300, 0, 10_000_000)
    min_lr_ratio: float = opt(0.05, 0.0, 1.0)
    grad_clip: float = opt(1.0, 0.0, 1000.0)
    g_weight: float = opt(0.5, 0.0, 100.0, doc="weight of the musician-offset loss (training and validation)")
    log_every: int = opt(50, 1, 1_000_000)
    eval_every: int = opt(250, 1, 1_000_000)
    eval_batches: int = opt(50, 1, 100_000)
    checkpoint_every: int = opt(250, 1, 1_000_000)
    keep_every: int = opt(0, 0, 1_000_000, doc="also keep the weights every N steps as step-NNNNNN.pt, "
                          "for averaging (0 = never)")
    partner_share: float = opt(0.5, 0.0, 1.0)
    partner_row_prob: float = opt(0.8, 0.0, 1.0)
    partner_noise_ms: float = opt(8.0, 0.0, 1000.0)
    self_history_share: float = opt(0.3, 0.0, 1.0)
    zero_history_share: float = opt(0.1, 0.0, 1.0)
    self_history_passes: int = opt(1, 1, 8, doc="passes of the model over its own predictions that make the "
                                   "self-history windows (2+ approaches playing alone)")
    self_history_from_real: float = opt(0.5, 0.0, 1.0, doc="share of self-history windows whose first pass "
                                        "sees the real history (the rest start from zeros)")
    accent_share: float = opt(0.0, 0.0, 1.0)
    init_from: str = opt("", doc="a checkpoint to warm-start from (empty = random initialisation)")
    threads: int = opt(0, 0, 1024)
    device: str = opt("auto", choices=("auto", "cpu", "cuda"))


@dataclass
class Finetune:
    epochs: int = opt(20, 1, 10_000)
    lr: float = opt(0.003, 0.0, 1.0)
    w_v: float = opt(1.0, 0.0, 100.0)
    w_o: float = opt(1.0, 0.0, 100.0)
    w_g: float = opt(1.0, 0.0, 100.0)
    w_r: float = opt(0.0, 0.0, 100.0)
    batch_size: int = opt(0, 0, 1_000_000)
    train_encoder: bool = opt(False)
    threads: int = opt(1, 0, 1024)
    warmup_steps: int = opt(5, 0, 10_000)


@dataclass
class Audio:
    sample_rate: int = opt(48000, 8000, 192000)
    block_frames: int = opt(128, 16, 8192)
    device: Any = opt(None, doc="sounddevice device name or index (null = the system default)")
    input_channels: int = opt(1, 1, 64)


@dataclass
class Synth:
    kit: str = opt("data/default_kit.toml", path=True)
    polyphony: int = opt(16, 1, 256)
    steal_fade_ms: float = opt(3.0, 0.0, 100.0)


@dataclass
class Listen:
    method: str = opt("default")
    hop: int = opt(128, 16, 4096)
    instrument: Optional[str] = opt("guitar", choices=("guitar", "bass", "keys", "voice", "wind", "percussion"))
    buf: Optional[int] = opt(None, 64, 16384)
    threshold: Optional[float] = opt(None, 0.0, 1e6)
    silence_db: Optional[float] = opt(None, -200.0, 0.0)
    min_ioi_ms: Optional[float] = opt(None, 0.0, 2000.0)
    gain_db: Optional[float] = opt(None, -60.0, 60.0)
    latency_ms: Optional[float] = opt(None, 0.0, 500.0)
    slur: Optional[bool] = opt(None)
    slur_semitones: Optional[float] = opt(None, 0.0, 24.0)
    tonal: Optional[bool] = opt(None)
    player_db: Optional[float] = opt(None, -120.0, 0.0)
    runup_flatness: Optional[float] = opt(None, 0.0, 1.0)
    tonal_swell: Optional[bool] = opt(None)
    stroke_decay_db: Optional[float] = opt(None, 0.0, 60.0)
    attack_dating: Optional[bool] = opt(None)


FILTER_HITS = ("score_notes", "score_notes_and_vels", "none")


@dataclass
class Engine:
    model_path: str = opt("models/rolypoly.pt", path=True)
    lookahead_ms: float = opt(30.0, 0.0, 2000.0)
    early_ms: float = opt(500.0, 0.0, 2000.0, doc="real time: fallback predictions this far ahead (0 = none)")
    countin: int = opt(0, 0, 16, doc="bars of clicks before the score")
    follow: float = opt(0.25, 0.0, 1.0, doc="share of each onset's gap to the drums that they lean towards (0 = off)")
    follow_min: float = opt(0.1, 0.0, 1.0, doc="below follow: the lean's gain falls like a running mean's to this (>= follow = constant)")
    follow_reset_ms: float = opt(4.0, 0.0, 100.0, doc="with follow_min: a running mean of the gaps beyond this restarts the fall (a change of feel)")
    follow_drums: float = opt(0.1, 0.0, 1.0, doc="share of each drum's own gap beyond the row's that it leans (0 = off)")
    take_format: str = opt("wav", choices=("wav", "flac"))
    filter_hits: str = opt("score_notes", choices=FILTER_HITS)
    generate_vels: list[float] = opt([0.1, 1.0], 0.0, 1.0, length=2, doc="lo hi, lo <= hi")
    loop: bool = opt(False)
    enable: bool = opt(True)


@dataclass
class Osc:
    host: str = opt("127.0.0.1")
    port: int = opt(5005, 0, 65535)
    reply_host: Optional[str] = opt(None)
    reply_port: Optional[int] = opt(None, 0, 65535)
    audio: str = opt("on", choices=("on", "off"))
    max_packet_bytes: int = opt(8192, 64, 65507)


@dataclass
class Introspect:
    db: str = opt("cache/patterns.sqlite", path=True)
    steps: int = opt(16, choices=(16, 32))
    seed: Optional[int] = opt(None, 0, 2**63 - 1)
    max_hamming: int = opt(4, 0, 32)
    max_neighbours: int = opt(64, 1, 100_000)
    max_takes: Optional[int] = opt(None, 1, 10_000_000)
    extra_midi: list[str] = opt([])


@dataclass
class Generate:
    events_model: str = opt("models/events.pt", path=True)
    mode: str = opt("off", choices=("off", "continue", "fill", "free"))
    bars: int = opt(8, 0, 1024)
    temperature: float = opt(1.1, 0.05, 5.0)
    drum_temperature: Optional[float] = opt(1.0, 0.05, 5.0)
    vel_temperature: Optional[float] = opt(1.0, 0.05, 5.0)
    loop_temperature: Optional[float] = opt(0.5, 0.05, 5.0, doc="draws cool towards it as the bars before repeat")
    generate_vels: list[float] = opt([0.0, 1.0], 0.0, 1.0, length=2, doc="window on drum probabilities, lo <= hi")
    density: Optional[float] = opt(None, 0.0, 1.0)
    complexity: Optional[float] = opt(None, 0.0, 1.0)
    fill_every: int = opt(0, 0, 1024)
    seed: Optional[int] = opt(None, 0, 2**63 - 1)


@dataclass
class Top:
    """Keys of ``config.yaml`` itself."""

    seed: int = opt(1234, 0, 2**63 - 1)
    outputs_dir: str = opt("outputs", path=True, doc="the user data folder: takes, model versions, demo outputs")
    takes_dir: str = opt("outputs/takes", path=True)
    models_dir: str = opt("outputs/models", path=True, doc="model versions (versions/); never the shipped models/")
    cache_dir: str = opt("cache", path=True)
    debug: bool = opt(False, doc="tracebacks from the engine and the bridge (the CLI's --debug sets it)")


#: group -> its schema, or {option: schema} when a group's options differ in shape
SCHEMA: dict[str, Any] = {
    "data": Data, "model": {"rolypoly": Model, "rolypoly_v2": Model, "rolypoly_inc": IncrementalModel,
              "events": EventsModel},
    "train": Train, "finetune": Finetune, "audio": Audio, "synth": Synth, "listen": Listen,
    "engine": Engine, "osc": Osc, "introspect": Introspect, "generate": Generate,
}


def schema_for(group: str, option: str | None = None):
    """The dataclass checking ``group`` (``None`` for a top-level key or an unknown option)."""
    s = SCHEMA.get(group)
    if isinstance(s, dict):
        return s.get(option) if option is not None else next(iter(s.values()))
    return s


def _field(path: str, choices: dict | None = None):
    """(dataclass field, its resolved type) for a dotted key, or None."""
    parts = path.split(".")
    if len(parts) == 1:
        cls = Top
    else:
        cls = schema_for(parts[0], (choices or {}).get(parts[0]))
        parts = parts[1:]
    f = None
    for i, name in enumerate(parts):
        if cls is None or not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        fields = {x.name: x for x in dataclasses.fields(cls)}
        if name not in fields:
            return None
        f, t = fields[name], hints[name]
        cls = t if dataclasses.is_dataclass(t) else None
        if i < len(parts) - 1 and cls is None:
            return None
    return (f, hints[f.name]) if f is not None else None


def _base(t):
    """(the type without Optional, whether None is allowed)."""
    if typing.get_origin(t) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return args[0], True
    return t, False


def _coerce_scalar(key: str, t, value):
    if t is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config {key}: expected true or false, got {value!r}")
    if t is int:
        if isinstance(value, bool):
            raise ConfigError(f"config {key}: expected a whole number, got {value!r}")
        try:
            f = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
        except ValueError:
            raise ConfigError(f"config {key}: expected a whole number, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"config {key}: expected a whole number, got {value!r}")
        return int(f)
    if t is float:
        if isinstance(value, bool) or isinstance(value, (bytes, bytearray)):
            raise ConfigError(f"config {key}: expected a number, got {value!r}")
        try:
            f = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
        except ValueError:
            raise ConfigError(f"config {key}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(f"config {key}: {value!r} is not a finite number")
        return f
    if t is str:
        if isinstance(value, (dict, list, tuple, bytes, bytearray)):
            raise ConfigError(f"config {key}: expected text, got {value!r}")
        return str(value)
    return value


def check_value(key: str, value, *, choices: dict | None = None, error=ConfigError, label: str | None = None):
    """``value`` converted to ``key``'s type and checked against its range; raises ``error`` otherwise.

    Parameters
    ----------
    key : str
        A dotted key path (``"engine.lookahead_ms"``).
    value : any
        What was given (a string from the command line or OSC, or a typed value).
    error : exception class
        Raised on a bad value (the engine passes :class:`~rolypoly.errors.EngineError`).
    label : str, optional
        How the message names the value (default ``config <key>``).

    Examples
    --------
    >>> check_value("engine.lookahead_ms", "250")
    250.0
    >>> check_value("engine.filter_hits", "bogus")
    Traceback (most recent call last):
    ...
    rolypoly.errors.ConfigError: config engine.filter_hits: 'bogus' is not one of score_notes, score_notes_and_vels, none
    """
    found = _field(key, choices)
    if found is None:
        raise error(f"unknown config key {key!r}")
    f, t = found
    try:
        return _check(key, f, t, value)
    except ConfigError as exc:
        msg = str(exc)
        if label is not None:
            msg = msg.replace(f"config {key}", label, 1)
        if error is ConfigError and label is None:
            raise
        raise error(msg) from None


def _check(key, f, t, value):
    base, nullable = _base(t)
    meta = f.metadata
    nullable = nullable or base is Any
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none") and nullable):
        if nullable:
            return None
        raise ConfigError(f"config {key}: a value is required (null is not allowed)")
    if typing.get_origin(base) is list:
        (item_t,) = typing.get_args(base) or (Any,)
        if isinstance(value, str):
            import yaml
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"config {key}: expected a list like [a, b], got {value!r}") from None
        if isinstance(value, (str, int, float)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"config {key}: expected a list like [a, b], got {value!r}")
        items = [_coerce_scalar(key, item_t, v) for v in list(value)]
        if meta["length"] is not None and len(items) != meta["length"]:
            raise ConfigError(f"config {key}: expected {meta['length']} values, got {len(items)}")
        for v in items:
            _range(key, meta, v)
        if key.endswith("generate_vels") and items[0] > items[1]:
            raise ConfigError(f"config {key}: lo {items[0]} > hi {items[1]}")
        return items
    if base is Any and isinstance(value, str):  # a device index or name
        value = int(value) if value.strip().isdigit() else value
    v = _coerce_scalar(key, base, value)
    _range(key, meta, v)
    if meta["path"] and isinstance(v, str):
        v = os.path.expanduser(v)
    return v


def _range(key, meta, v):
    if meta["choices"] is not None and v not in meta["choices"]:
        raise ConfigError(f"config {key}: {v!r} is not one of {', '.join(str(c) for c in meta['choices'])}")
    lo, hi = meta["lo"], meta["hi"]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(f"config {key}: {v!r} is outside [{lo:g}, {hi:g}]")


def schema_defaults(cls) -> dict:
    """The defaults of a schema dataclass as a plain dict (nested groups included)."""
    return dataclasses.asdict(cls())


# -- composition ----------------------------------------------------------------------------------
def configs_dir() -> Path:
    """The folder holding ``config.yaml`` (``$ROLYPOLY_CONFIGS`` overrides it)."""
    env = os.environ.get("ROLYPOLY_CONFIGS")
    path = Path(env) if env else REPO_DIR / "configs"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {path} (set ROLYPOLY_CONFIGS to the configs folder)")
    return path


def groups() -> list[str]:
    """The config groups (folders of ``configs/``)."""
    return sorted(p.name for p in configs_dir().iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _compose(group_overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
            cfg = compose(config_name="config", overrides=list(group_overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"bad override in {list(group_overrides)}: {first}") from None
    finally:
        GlobalHydra.instance().clear()
    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items() if "/" not in k}
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    return cfg, choices


def known_keys(cfg=None) -> set[str]:
    """Every dotted key path of the composed config (and the group names)."""
    from omegaconf import DictConfig
    cfg = cfg if cfg is not None else load_config([])
    out = set(groups())

    def walk(node, prefix):
        for k in node.keys():
            p = f"{prefix}{k}"
            out.add(p)
            child = node._get_node(k)
            if isinstance(child, DictConfig):
                walk(child, p + ".")
    walk(cfg, "")
    return out


def is_override(token: str, keys: set[str] | None = None) -> bool:
    """Whether a command-line token is a config override: ``key=value`` with a known ``key``.

    Examples
    --------
    >>> is_override("synth.polyphony=8"), is_override("a=b.mid"), is_override("model=rolypoly_v2")
    (True, False, True)
    """
    if "=" not in token or token.startswith("-"):
        return False
    key = token.split("=", 1)[0].lstrip("+")
    keys = keys if keys is not None else _default_keys()
    return key in keys


_KEYS_CACHE: dict[str, set[str]] = {}


def _default_keys() -> set[str]:
    where = str(configs_dir())
    if where not in _KEYS_CACHE:
        keys = known_keys()
        for g, s in SCHEMA.items():  # keys of other options of a group (model.train.* of model=events)
            for cls in (s.values() if isinstance(s, dict) else [s]):
                keys |= {f"{g}.{k}" for k in _flat(schema_defaults(cls))}
        _KEYS_CACHE[where] = keys
    return _KEYS_CACHE[where]


def _flat(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out.extend(_flat(v, prefix + k + "."))
    return out


def load_config(overrides: list[str] | tuple[str, ...] = ()):
    """Compose ``configs/`` with ``key=value`` overrides and check every value against the schema.

    Parameters
    ----------
    overrides : list of str
        Items such as ``"model=rolypoly_v2"`` (a group choice) or ``"train.max_steps=100"``
        (a key path; see the module docs for how values are read).

    Returns
    -------
    omegaconf.DictConfig

    Raises
    ------
    ConfigError
        An unknown key, a value of the wrong type or out of range (the message names the key).

    Examples
    --------
    >>> cfg = load_config(["train.max_steps=10"])
    >>> cfg.train.max_steps
    10
    >>> load_config(["synth.polyphony=abc"])
    Traceback (most recent call last):
    ...
    rolypoly.errors.ConfigError: config synth.polyphony: expected a whole number, got 'abc'
    """
    from omegaconf import DictConfig, OmegaConf
    group_names = set(groups())
    hydra_items, leaf = [], []
    for item in overrides:
        item = str(item)
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key = item.split("=", 1)[0]
        if key in group_names or key.startswith(("+", "~")):
            hydra_items.append(item)
        else:
            leaf.append(item)
    cfg, choices = _compose(hydra_items)
    given = set()
    for item in leaf:
        key, raw = item.split("=", 1)
        key = key.strip()
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        found = _field(key, choices)
        if not isinstance(node, DictConfig) or (name not in node and found is None):
            import difflib
            near = difflib.get_close_matches(key, sorted(known_keys(cfg)), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
        if found is not None:
            value = _check(key, found[0], found[1], raw)
        else:  # a key the schema does not know yet (tests/test_config.py flags it)
            import yaml
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
        node[name] = value
        given.add(key)
    _validate(cfg, choices, given)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _validate(cfg, choices: dict, given: set[str]) -> None:
    """Fill missing keys from the schema, convert and check each value, anchor config-file paths."""
    from omegaconf import DictConfig, OmegaConf

    def visit(node, cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            t = hints[f.name]
            if dataclasses.is_dataclass(t):
                if f.name not in node or not isinstance(node._get_node(f.name), DictConfig):
                    node[f.name] = OmegaConf.create(schema_defaults(t))
                visit(node[f.name], t, key + ".")
                continue
            if f.name not in node:
                node[f.name] = dataclasses.asdict(cls())[f.name]
            raw = node[f.name]
            interpolated = OmegaConf.is_interpolation(node, f.name)
            value = _check(key, f, t, OmegaConf.to_container(raw) if isinstance(raw, (DictConfig,))
                           else (list(raw) if hasattr(raw, "__len__") and not isinstance(raw, str) else raw))
            if interpolated:  # follows the key it names (takes_dir follows outputs_dir)
                continue
            if f.metadata["path"] and isinstance(value, str) and key not in given and not os.path.isabs(value):
                value = str(REPO_DIR / value)
            if value != raw:
                node[f.name] = value

    try:
        visit(cfg, Top, "")
        for group, opt_name in choices.items():
            cls = schema_for(group, opt_name)
            if cls is not None and group in cfg:
                visit(cfg[group], cls, group + ".")
    except ConfigError:
        raise
    except Exception as exc:  # an interpolation that does not resolve, a list where a number goes
        raise ConfigError(f"bad config value: {exc}") from None


def resolve_path(path: str | os.PathLike) -> Path:
    """A path as given: ``~`` expanded, relative to the current directory."""
    return Path(os.path.expanduser(str(path)))


def with_values(cfg, **dotted):
    """A copy of ``cfg`` with dotted keys set (``with_values(cfg, **{"engine.enable": False})``).

    Examples
    --------
    >>> cfg = with_values(load_config([]), **{"train.max_steps": 7})
    >>> cfg.train.max_steps
    7
    """
    import copy

    from omegaconf import OmegaConf
    new = copy.deepcopy(cfg)
    for key, value in dotted.items():
        OmegaConf.update(new, key, value, merge=False)
    return new
