"""TorchScript artefacts: export, the contract every model follows, loading, the swing model.

The contract: a TorchScript module whose ``forward(x)`` takes ``(1, T, 22)``
float32 rows (:mod:`rolypoly.score.features` layout) and returns ``(1, T, 19)``, loadable with
``torch.jit.load`` alone.  It should carry these attributes (defaults are used when absent):

``version`` (str), ``layout_json`` (str, JSON of :data:`rolypoly.score.features.LAYOUT` plus
``window``), ``offset_mu`` and ``offset_sigma`` (float, GMD train drum-offset
statistics in bar fractions, used by finetuning's regulariser).

Examples
--------
>>> rt = load_runtime("models/rolypoly.pt")                    # doctest: +SKIP
>>> rt.predict(np.zeros((16, 22), np.float32)).shape           # doctest: +SKIP
(16, 19)
"""
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from rolypoly.errors import ModelError
from rolypoly.io import atomic_path
from rolypoly.score.features import DEFAULT_WINDOW, LAYOUT, N_IN, N_OUT, OFF_SCALE, PHASE, VEL0, VEL1

#: Used when a compatible module carries no statistics of its own: GMD train drum offsets
#: (16/triplet grid preparation, bar fractions), as measured by ``Takes.offset_stats``.
DEFAULT_OFFSET_MU = -0.00192
DEFAULT_OFFSET_SIGMA = 0.00942


def is_torchscript(path) -> bool:
    """Whether ``path`` is a TorchScript archive (not an eager ``torch.save`` checkpoint)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _atomic_save(module, path: Path, extra_files: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files=extra_files or {})


class Exported(torch.nn.Module):
    """A trained network with the contract attributes (what ``rolypoly export`` writes)."""

    version: str
    layout_json: str
    offset_mu: float
    offset_sigma: float
    window: int

    def __init__(self, net, version: str, layout_json: str, mu: float, sigma: float, block: int):
        super().__init__()
        self.net = net
        self.version = version
        self.layout_json = layout_json
        self.offset_mu = mu
        self.offset_sigma = sigma
        self.window = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)



def _wrap(model, meta: dict):
    """A scriptable module holding ``model`` and the contract attributes."""
    from dataclasses import asdict
    conf = meta.get("model_config") or (asdict(model.config) if hasattr(model, "config") else {})
    layout = dict(LAYOUT, window=int(model.window), model_config=conf)
    return Exported(model, str(meta.get("version", "unknown")), json.dumps(layout),
                    float(meta.get("offset_mu", DEFAULT_OFFSET_MU)), float(meta.get("offset_sigma", DEFAULT_OFFSET_SIGMA)),
                    int(model.window))


def export_torchscript(model, meta: dict, path, freeze: bool = True) -> Path:
    """Script ``model`` (eval mode: no dropout) with its contract attributes and write it atomically.

    Parameters
    ----------
    model : RolypolyModel
    meta : dict with ``version``, ``offset_mu``, ``offset_sigma``, ``model_config``
    path : output file (written via a temporary file and ``os.replace``)
    freeze : inline the weights (faster inference; attributes are preserved)
    """
    import copy

    path = Path(path)
    net = copy.deepcopy(model).cpu().eval()
    scripted = torch.jit.script(_wrap(net, meta).eval())
    if freeze:
        scripted = torch.jit.freeze(scripted, preserved_attrs=["version", "layout_json", "offset_mu",
                                                               "offset_sigma", "window"])
    meta_json = json.dumps({k: v for k, v in meta.items() if k != "history"}, default=str)
    _atomic_save(scripted, path, {"meta.json": meta_json})
    load_runtime(path)  # the file we wrote must honour the contract
    return path


class Runtime:
    """A loaded TorchScript model that honours the contract.

    Attributes
    ----------
    module : the TorchScript module
    path : Path
    version : str
    offset_mu, offset_sigma : float, bar fractions
    layout : dict, the feature layout (``window`` included)
    """

    def __init__(self, module, path: Path, threads: int = 1):
        self.module = module
        self.path = path
        self.threads = threads
        self.version = str(getattr(module, "version", "") or f"unversioned ({path.name})")
        self.offset_mu = float(getattr(module, "offset_mu", DEFAULT_OFFSET_MU))
        self.offset_sigma = float(getattr(module, "offset_sigma", DEFAULT_OFFSET_SIGMA))
        try:
            layout = json.loads(getattr(module, "layout_json", "") or "{}")
        except ValueError:
            raise ModelError(f"{path}: layout_json attribute is not valid JSON") from None
        self.layout = dict(LAYOUT)
        self.layout.update(layout)
        if int(self.layout.get("n_in", N_IN)) != N_IN or int(self.layout.get("n_out", N_OUT)) != N_OUT:
            raise ModelError(f"{path}: layout says {self.layout.get('n_in')} inputs / {self.layout.get('n_out')} "
                             f"outputs; rolypoly needs {N_IN} / {N_OUT}")
        if abs(float(self.layout.get("off_scale", OFF_SCALE)) - OFF_SCALE) > 1e-9:
            raise ModelError(f"{path}: offset scale {self.layout.get('off_scale')} differs from {OFF_SCALE}")

    @property
    def window(self) -> int:
        # files exported before the rename carry the window as "block_size"
        return int(self.layout.get("window", self.layout.get("block_size", DEFAULT_WINDOW)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One window: ``(T, 22)`` float32 -> ``(T, 19)`` float32 (one thread, no grad)."""
        import torch
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_IN:
            raise ModelError(f"predict expects (T, {N_IN}) rows, got shape {x.shape}")
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            y = self.module(torch.from_numpy(np.ascontiguousarray(x))[None])
        return y[0].numpy()


def load_runtime(path, threads: int = 1) -> Runtime:
    """Load a TorchScript model and check the contract.

    Raises
    ------
    ModelError
        Missing, truncated or not TorchScript; or ``(1, T, 22)`` zeros do not give a finite
        ``(1, T, 19)`` tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if not is_torchscript(path):
        raise ModelError(f"{path}: not a TorchScript file (make one from a checkpoint with: rolypoly export CKPT OUT.pt)")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # truncated archives and foreign formats surface as many exception types
        raise ModelError(f"{path}: cannot load TorchScript ({type(exc).__name__}: "
                         f"{(str(exc).strip().splitlines() or ['corrupt'])[0][:200]})") from None
    module.eval()
    for T in (DEFAULT_WINDOW, 1):
        try:
            with torch.inference_mode():
                y = module(torch.zeros(1, T, N_IN))
        except Exception as exc:
            raise ModelError(f"{path}: forward on a (1, {T}, {N_IN}) input failed; the contract is "
                             f"(1, T, {N_IN}) -> (1, T, {N_OUT}) ({type(exc).__name__}: "
                             f"{(str(exc).strip().splitlines() or [''])[0][:200]})") from None
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (1, T, N_OUT):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ModelError(f"{path}: wrong contract: (1, {T}, {N_IN}) input gave {got}, expected (1, {T}, {N_OUT})")
        if not bool(torch.isfinite(y).all()):
            raise ModelError(f"{path}: wrong contract: output on zeros is not finite")
    return Runtime(module, path, threads)


# ----------------------------------------------------------------------------- the swing model

#: The paper's swing example pushes off-beat hits 0.05 bar late; the output scale holds
#: at most 0.04 bar (features.OFF_CLIP), so the swing model plays the largest expressible delay.
SWING_BAR = 0.04


class Swing(torch.nn.Module):
    """Same contract, no learning: score velocities, off-beat 8th hits ``amount`` bar late."""

    version: str
    layout_json: str
    offset_mu: float
    offset_sigma: float
    window: int
    amount: float

    def __init__(self, amount: float):
        super().__init__()
        self.version = f"swing-{amount:g}bar"
        self.layout_json = json.dumps(dict(LAYOUT, window=DEFAULT_WINDOW))
        self.offset_mu = DEFAULT_OFFSET_MU
        self.offset_sigma = DEFAULT_OFFSET_SIGMA
        self.window = DEFAULT_WINDOW
        self.amount = amount / OFF_SCALE
        self.c_vel0, self.c_vel1, self.c_phase = VEL0, VEL1, PHASE  # TorchScript reads no globals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vel = x[:, :, self.c_vel0:self.c_vel1]
        eighth = x[:, :, self.c_phase] * 8.0
        # An off-beat 8th sits at an odd multiple of 1/8 bar.
        off_beat = (torch.abs(eighth - torch.round(eighth)) < 0.01) & (torch.remainder(torch.round(eighth), 2.0) == 1.0)
        off = off_beat.to(x.dtype).unsqueeze(2) * (vel > 0).to(x.dtype) * self.amount
        g = torch.zeros_like(x[:, :, 0:1])
        return torch.cat([vel, off, g], dim=2)



def swing_module(amount_bar: float = SWING_BAR):
    """A scriptable swing model (see :class:`Swing`)."""
    return Swing(float(amount_bar))


def write_swing(path, amount_bar: float = SWING_BAR) -> Path:
    """Script the swing model and write it atomically."""
    path = Path(path)
    _atomic_save(torch.jit.script(swing_module(amount_bar)), path)
    load_runtime(path)
    return path
