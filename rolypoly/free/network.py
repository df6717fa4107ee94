"""The event model: a small GRU that reads events one at a time and proposes the next.

Per event it reads the input vector of :mod:`rolypoly.free.encode` and updates its
state; from the state a *gap head* gives the distribution of the gap (in 16ths) to the
next event, and a *drum head*, given the chosen position, gives each drum's probability
and velocity class.  Being recurrent it runs incrementally at a constant cost per event
(the live generator feeds one event per call).  Dropout acts in training only; the
exported module has none, so generation is random only where it samples.

Examples
--------
>>> import torch
>>> net = EventNet(EventConfig(d_model=32, hidden=32, n_layers=1))
>>> gap, out, h = net(torch.zeros(2, 5, N_FEAT), net.initial_state(2))
>>> gap.shape, net.drum_head(out, torch.zeros(2, 5, N_QUERY)).shape
(torch.Size([2, 5, 32]), torch.Size([2, 5, 36]))
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from rolypoly.errors import ModelError
from rolypoly.free.encode import (
    MAX_DELTA,
    N_DRUM_OUT,
    N_DRUMS,
    N_FEAT,
    N_MASKS,
    N_VEL,
    STEPS,
)

N_QUERY = STEPS + MAX_DELTA
DRUM_HEADS = ("independent", "joint")
MODEL_FORMAT = "rolypoly-events-1"


@dataclass
class EventConfig:
    d_model: int = 128
    hidden: int = 192
    n_layers: int = 2
    dropout: float = 0.1
    window: int = 96          # events per training sequence
    drum_head: str = "independent"   # or "joint": one distribution over the 511 drum combinations

    @classmethod
    def from_cfg(cls, node) -> "EventConfig":
        names = {f.name for f in fields(cls)}
        get = node.get if hasattr(node, "get") else (lambda k, d=None: getattr(node, k, d))
        values = {k: get(k) for k in names if get(k) is not None}
        conf = cls(**{k: type(getattr(cls(), k))(v) for k, v in values.items()})
        if min(conf.d_model, conf.hidden, conf.n_layers, conf.window) < 1:
            raise ModelError(f"event model sizes must be >= 1: {asdict(conf)}")
        if not 0.0 <= conf.dropout < 1.0:
            raise ModelError(f"event model dropout must be in [0, 1), got {conf.dropout}")
        if conf.drum_head not in DRUM_HEADS:
            raise ModelError(f"event model drum_head must be one of {DRUM_HEADS}, got {conf.drum_head!r}")
        return conf


class EventNet(nn.Module):
    """GRU over events with a gap head and a position-conditioned drum head (see module docs)."""

    def __init__(self, config: EventConfig):
        super().__init__()
        self.config = config
        c = config
        self.n_layers, self.hidden = c.n_layers, c.hidden
        self.embed = nn.Sequential(nn.Linear(N_FEAT, c.d_model), nn.GELU())
        self.drop = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.d_model, c.hidden, num_layers=c.n_layers, batch_first=True,
                          dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.gap = nn.Linear(c.hidden, MAX_DELTA)
        self.query = nn.Linear(N_QUERY, c.hidden)
        self.drums = nn.Sequential(nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(), nn.Linear(c.hidden, N_DRUM_OUT))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.n_layers, batch, self.hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor):
        """``x (B, T, N_FEAT)``, state ``h (layers, B, hidden)`` -> ``(gap logits (B, T, 32), out, new h)``."""
        out, h = self.gru(self.drop(self.embed(x)), h)
        out = self.drop(out)
        return self.gap(out), out, h

    def drum_head(self, out: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Drum logits (9) and velocity-class logits (9 x 3) for the queried next position ``q``."""
        return self.drums(out + self.query(q))


class JointEventNet(EventNet):
    """The event model with a *joint* drum head: which drums sound together is one draw.

    The independent head gives each drum its own probability, so sampling loses how drums
    go together (kick with hi-hat, a ghost snare alone) and an event drawn with no drum at
    all (5 % of draws) needs a fallback that inflates the likeliest drum.  Here the drum head
    scores the 512 combinations (``mask`` 0, nothing, is never a target), and a velocity
    head, given the combination drawn, scores each drum's velocity class.
    """

    def __init__(self, config: EventConfig):
        super().__init__(config)
        c = config
        self.drums = nn.Sequential(nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(), nn.Linear(c.hidden, N_MASKS))
        self.vel_in = nn.Linear(N_DRUMS, c.hidden)
        self.vels = nn.Sequential(nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(), nn.Linear(c.hidden, N_DRUMS * N_VEL))

    def vel_head(self, out: torch.Tensor, q: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Velocity-class logits (9 x 3) at the queried position, given which drums sound (``bits``, 9 floats)."""
        return self.vels(out + self.query(q) + self.vel_in(bits))


def make_net(config: EventConfig) -> EventNet:
    """The network for ``config.drum_head``."""
    return JointEventNet(config) if config.drum_head == "joint" else EventNet(config)


class ExportedEvents(nn.Module):
    """The TorchScript artefact: ``forward(x, h)`` and ``drums(out, q)`` plus what generation needs."""

    version: str
    layout_json: str
    n_layers: int
    hidden: int

    def __init__(self, net: EventNet, version: str, layout_json: str):
        super().__init__()
        self.net = net
        self.version = version
        self.layout_json = layout_json
        self.n_layers = net.n_layers
        self.hidden = net.hidden

    def forward(self, x: torch.Tensor, h: torch.Tensor):
        return self.net(x, h)

    @torch.jit.export
    def drums(self, out: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.net.drum_head(out, q)


class ExportedJointEvents(ExportedEvents):
    """:class:`ExportedEvents` of a :class:`JointEventNet`: ``drums`` gives 512 combination logits, ``vels`` the classes."""

    @torch.jit.export
    def vels(self, out: torch.Tensor, q: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        return self.net.vel_head(out, q, bits)


def export_events(net: EventNet, meta: dict, path) -> Path:
    """Script ``net`` (eval mode) with its layout and write it atomically; the file is checked by loading it."""
    import copy

    from rolypoly.io import atomic_path
    path = Path(path)
    net = copy.deepcopy(net).cpu().eval()
    layout = {k: meta[k] for k in ("steps", "max_delta", "vel_bounds", "vel_centers", "style_quantiles", "vel_quantiles",
                                   "n_feat", "style_bars", "density_scale") if k in meta}
    layout["model_config"] = asdict(net.config)
    wrap = ExportedJointEvents if isinstance(net, JointEventNet) else ExportedEvents
    scripted = torch.jit.script(wrap(net, str(meta.get("version", "events")), json.dumps(layout)))
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"meta.json": json.dumps(
            {k: v for k, v in meta.items() if k != "history"}, default=str)})
    from rolypoly.free.runtime import load_events
    load_events(path)
    return path
