"""TorchScript artefacts: export, the contract every model follows, loading, the swing model.

The contract: a TorchScript module whose ``forward(x)`` takes ``(1, T, 22)``
float32 rows (:mod:`rolypoly.score.features` layout) and returns ``(1, T, 19)``, loadable with
``torch.jit.load`` alone.  It should carry these attributes (defaults are used when absent):

``version`` (str), ``layout_json`` (str, JSON of :data:`rolypoly.score.features.LAYOUT` plus
``window``), ``offset_mu`` and ``offset_sigma`` (float, GMD train drum-offset
statistics in bar fractions, used by finetuning's regulariser).

An incremental model adds ``supports_step = True`` and three exported methods, used
through :class:`Runtime` (``reset`` / ``step``) when present::

    encode(score (1, N, 22)) -> memory           # once per score: the encoder reads ahead
    encode_part(score, lo, hi, memory)           # optional: rows [lo, hi) changed, memory updated in place
    new_cache(batch: int) -> cache               # an empty decoder cache
    step(prev (1, 22), row (1, 22), k: int, memory, cache) -> (1, 19)   # row k; cache updated in place

Stepping the rows of a take gives the outputs of one ``forward`` over the whole take.

A rolypoly decoder may also export ``step_weights() -> list of tensors`` (its decoder's weights in
:data:`rolypoly.model.stepper.WEIGHT_ORDER`): :class:`Runtime` then steps rows with the compiled
step of :mod:`rolypoly.model.stepper`, once a check on made-up rows shows it equals ``step``.

Examples
--------
>>> rt = load_runtime("models/rolypoly.pt")                    # doctest: +SKIP
>>> rt.predict(np.zeros((16, 22), np.float32)).shape           # doctest: +SKIP
(16, 19)
>>> rt.reset(score_x); y0 = rt.step(None, score_x[0])            # doctest: +SKIP
"""
import json
import threading
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


class ExportedStep(Exported):
    """An incremental network: the contract plus ``encode`` / ``new_cache`` / ``step``."""

    supports_step: bool
    receptive_field: int

    def __init__(self, net, version: str, layout_json: str, mu: float, sigma: float, block: int):
        super().__init__(net, version, layout_json, mu, sigma, block)
        self.supports_step = True
        self.receptive_field = int(net.receptive_field)

    @torch.jit.export
    def encode(self, score: torch.Tensor) -> torch.Tensor:
        return self.net.encode(score)

    @torch.jit.export
    def encode_part(self, score: torch.Tensor, lo: int, hi: int, memory: torch.Tensor) -> None:
        self.net.encode_part(score, lo, hi, memory)

    @torch.jit.export
    def new_cache(self, batch: int) -> torch.Tensor:
        return self.net.new_cache(batch)

    @torch.jit.export
    def step(self, prev: torch.Tensor, row: torch.Tensor, k: int, memory: torch.Tensor,
             cache: torch.Tensor) -> torch.Tensor:
        return self.net.step(prev, row, k, memory, cache)

    @torch.jit.export
    def step_weights(self) -> list[torch.Tensor]:
        return self.net.step_weights()

#: Attributes and methods a frozen export keeps.
PRESERVED = ["version", "layout_json", "offset_mu", "offset_sigma", "window"]
PRESERVED_STEP = PRESERVED + ["supports_step", "receptive_field", "encode", "encode_part", "new_cache", "step",
                                "step_weights"]


def _wrap(model, meta: dict):
    """A scriptable module holding ``model`` and the contract attributes."""
    from dataclasses import asdict
    conf = meta.get("model_config") or (asdict(model.config) if hasattr(model, "config") else {})
    incremental = int(getattr(model, "span", 0)) > 0
    # The window of an incremental model is its receptive field: the rows of played history
    # its output depends on (a live window that long gives the stepped outputs).
    window = int(model.receptive_field) if incremental else int(model.window)
    layout = dict(LAYOUT, window=window, model_config=conf, incremental=incremental)
    cls = ExportedStep if incremental else Exported
    return cls(model, str(meta.get("version", "unknown")), json.dumps(layout),
               float(meta.get("offset_mu", DEFAULT_OFFSET_MU)), float(meta.get("offset_sigma", DEFAULT_OFFSET_SIGMA)),
               window)


def export_torchscript(model, meta: dict, path, freeze: bool = True) -> Path:
    """Script ``model`` (eval mode: no dropout) with its contract attributes and write it atomically.

    Parameters
    ----------
    model : RolypolyModel
    meta : dict with ``version``, ``offset_mu``, ``offset_sigma``, ``model_config``
    path : output file (written via a temporary file and ``os.replace``)
    freeze : inline the weights (faster inference; attributes are preserved)
    """
    path = Path(path)
    with _SCRIPTED_LOCK:
        scripted = _scripted(model, meta)
        if freeze:
            keep = PRESERVED_STEP if bool(getattr(scripted, "supports_step", False)) else PRESERVED
            # frozen from a reloaded copy: freezing a module scripted in this process leaves its frozen
            # graphs (weights included, ~8 MB) in the process-wide compilation unit for good, so every
            # finetune's export would grow a long performance's memory; a loaded copy owns its own unit
            scripted = torch.jit.freeze(_reloaded(scripted), preserved_attrs=keep)
        else:
            scripted = _reloaded(scripted)   # not the cached module itself: the next export rewrites it
    meta_json = json.dumps({k: v for k, v in meta.items() if k != "history"}, default=str)
    _atomic_save(scripted, path, {"meta.json": meta_json})
    # the file we wrote must honour the contract; checked unoptimised: the executor's profiling
    # runs would cost a finetune's export a third of a second for calls made only to check
    with torch.jit.optimized_execution(False):
        load_runtime(path)
    return path


#: One scripted module per architecture, reused by later exports of the same one (a finetune's
#: export, every take): scripting costs 0.7 s, copying weights and attributes into it almost nothing.
_SCRIPTED: dict = {}
_SCRIPTED_LOCK = threading.Lock()   # exports from two threads would share the cached module


def _scripted(model, meta: dict):
    """The scripted contract module of ``model`` and ``meta`` (eval mode), from the cache when an
    export of the same architecture was scripted before in this process (see :data:`_SCRIPTED`)."""
    import copy
    net = copy.deepcopy(model).cpu().eval()
    wrapped = _wrap(net, meta).eval()
    weights = wrapped.state_dict()
    key = (type(wrapped).__name__, type(net).__name__, wrapped.layout_json,
           tuple((k, tuple(v.shape), v.dtype) for k, v in weights.items()))
    cached = _SCRIPTED.get(key)
    if cached is None:
        cached = _SCRIPTED[key] = torch.jit.script(wrapped)
    else:
        with torch.no_grad():
            cached.load_state_dict(weights)
        for name in ("version", "offset_mu", "offset_sigma"):
            setattr(cached, name, getattr(wrapped, name))
    return cached.eval()


def _reloaded(scripted):
    """``scripted`` saved and loaded back (a module with its own compilation unit)."""
    import io
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    return torch.jit.load(buf).eval()


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

        self._memory = None
        self._encoded: np.ndarray | None = None   # the score rows self._memory encodes
        self._cache = None
        self._k = 0
        self._n = 0
        # Preallocated step inputs: prev row, this row (no allocation per step for the inputs).
        self._rows = torch.zeros(2, 1, N_IN)
        self._rows_np = self._rows.numpy()
        # The compiled step (see enable_compiled_step); None: the TorchScript step.
        self._fast = None

    @property
    def window(self) -> int:
        """Rows of history the output depends on (the receptive field of an incremental model)."""
        # files exported before the rename carry the window as "block_size"
        return int(self.layout.get("window", self.layout.get("block_size", DEFAULT_WINDOW)))

    @property
    def reads_ahead(self) -> int:
        """Score rows ahead of a row that its encoding reads (incremental models; 0 otherwise)."""
        if not self.supports_step:
            return 0
        conf = self.layout.get("model_config") or {}
        return int(conf.get("n_enc_layers", 0)) * int(conf.get("enc_ahead", 0))

    @property
    def supports_step(self) -> bool:
        """Whether the model decodes incrementally (:meth:`reset` / :meth:`step`)."""
        return bool(getattr(self.module, "supports_step", False)) and hasattr(self.module, "step")

    @property
    def compiled_step(self) -> bool:
        """Whether :meth:`step` runs the compiled step rather than the module's TorchScript ``step``."""
        return self._fast is not None

    def enable_compiled_step(self, rows: int = 48, tol: float = 1e-4) -> bool:
        """Step with :class:`rolypoly.model.stepper.CompiledStep` when the module exports its
        decoder weights and, on ``rows`` made-up rows, the compiled outputs equal the TorchScript
        ones within ``tol``; returns whether it is on.  Clears any encoding (``reset`` again).
        """
        self._fast, self._memory, self._encoded = None, None, None
        if not self.supports_step or not hasattr(self.module, "step_weights"):
            return False
        from rolypoly.model.stepper import CompiledStep
        conf = self.layout.get("model_config") or {}
        try:
            with torch.inference_mode():
                fast = CompiledStep(self.module.step_weights(), int(conf.get("n_heads", 0)), int(conf.get("span", 0)))
        except (ModelError, RuntimeError, ValueError):  # RuntimeError: a foreign step_weights
            return False
        x = np.random.default_rng(0).random((rows, N_IN)).astype(np.float32)
        self.reset(x)
        fast.bind(self._memory.numpy())
        worst = 0.0
        for k in range(rows):
            prev = x[k - 1] if k else None
            worst = max(worst, float(np.abs(self.step(prev, x[k]) - fast.step(prev, x[k], k)).max()))
        self._memory, self._encoded = None, None
        if not worst <= tol:
            return False
        self._fast = fast
        return True

    @property
    def steps_since_reset(self) -> int:
        """Index ``k`` of the row the next :meth:`step` predicts."""
        return self._k

    def reset(self, score_x: np.ndarray) -> None:
        """Encode a whole score ``(N, 22)`` (the encoder reads ahead) and clear the decoder cache.

        Row index ``k`` of :meth:`step` counts the steps since this call.  Costs one encoder
        pass over the score the first time (call it when a score is read, never from the audio
        thread); the same score again (a take's start after ``read``, a loop's wrap) reuses that
        encoding and only clears the cache.
        """
        if not self.supports_step:
            raise ModelError(f"{self.path}: this model has no incremental decoder (use predict on windows)")
        x = np.asarray(score_x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_IN or len(x) == 0:
            raise ModelError(f"reset expects (N, {N_IN}) score rows with N >= 1, got shape {x.shape}")
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        same = (self._memory is not None and self._encoded is not None and self._encoded.shape == x.shape
                and np.array_equal(self._encoded, x))
        with torch.inference_mode():
            if not same:
                self._memory = self.module.encode(torch.from_numpy(np.ascontiguousarray(x))[None])
                self._encoded = x.copy()
            self._cache = self.module.new_cache(1)
        if self._fast is not None:
            self._fast.bind(self._memory.numpy())
        self._k, self._n = 0, len(x)

    def update(self, score_x: np.ndarray, lo: int, hi: int, valid: int | None = None) -> None:
        """Score rows ``[lo, hi)`` of the score given to :meth:`reset` changed (``score_x`` is the
        whole score, changed rows included): update the encoding, keep the decoder cache.

        Uses the model's ``encode_part`` (only the rows those rows reach are recomputed), or
        encodes the whole score again when the model has none.  Rows from ``lo`` on must not
        have been stepped yet.  ``valid``: only rows before it are written yet (a take that
        grows); later rows are neither read nor brought up to date, and the last rows before
        it are encoded as if the score ended there, until the next update past them.  Free
        mode calls it from the worker when it writes bars ahead.
        """
        if self._memory is None:
            raise ModelError("update before reset: call reset(score_x) first")
        x = np.asarray(score_x, dtype=np.float32)
        if x.shape != self._encoded.shape:
            raise ModelError(f"update: score of shape {x.shape}, reset had {self._encoded.shape}")
        lo, hi = max(0, int(lo)), min(len(x), int(hi))
        if hi <= lo:
            return
        if lo < self._k:
            raise ModelError(f"update: row {lo} was already stepped (next row {self._k})")
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x))[None]
            if hasattr(self.module, "encode_part"):
                n = len(x) if valid is None else max(hi, min(len(x), int(valid)))
                self.module.encode_part(t[:, :n], lo, hi, self._memory)
            else:
                self._memory = self.module.encode(t)
                if self._fast is not None:
                    self._fast.bind(self._memory.numpy(), clear=False)
        self._encoded[lo:hi] = x[lo:hi]

    def step(self, prev_row: np.ndarray | None, row: np.ndarray) -> np.ndarray:
        """Predict row ``k`` (19 values) and advance ``k``.

        ``prev_row`` is row ``k-1`` as finally played (realised offsets, tau_g), None for
        ``k = 0``; ``row`` is row ``k``'s input row (its score features are read).
        """
        if self._memory is None:
            raise ModelError("step before reset: call reset(score_x) first")
        if self._k >= self._n:
            raise ModelError(f"step {self._k} is past the end of the {self._n}-row score; reset() again")
        if prev_row is None:
            self._rows_np[0] = 0.0
        else:
            self._rows_np[0, 0] = prev_row
        self._rows_np[1, 0] = row
        if self._fast is not None:
            y = self._fast.step(self._rows_np[0, 0], self._rows_np[1, 0], self._k)   # row 0's prev: zeros
            self._k += 1
            return y
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            y = self.module.step(self._rows[0], self._rows[1], self._k, self._memory, self._cache)
        self._k += 1
        return y[0].numpy()

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


def load_runtime(path, threads: int = 1, compiled: bool = True) -> Runtime:
    """Load a TorchScript model and check the contract.

    ``compiled``: step with the compiled step when the file allows it
    (:meth:`Runtime.enable_compiled_step`); False keeps the TorchScript ``step``.

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
    rt = Runtime(module, path, threads)
    if rt.supports_step:
        x = np.zeros((3, N_IN), np.float32)
        try:
            rt.reset(x)
            y = rt.step(None, x[0])
        except Exception as exc:
            raise ModelError(f"{path}: says supports_step but reset/step failed ({type(exc).__name__}: "
                             f"{(str(exc).strip().splitlines() or [''])[0][:200]})") from None
        if y.shape != (N_OUT,) or not np.isfinite(y).all():
            raise ModelError(f"{path}: wrong contract: step gave shape {y.shape}, expected ({N_OUT},) finite")
        rt._memory = None
        if compiled:
            rt.enable_compiled_step()
    return rt


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
