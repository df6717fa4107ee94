"""Latency of the model on the live path: one incremental step, one tick, one window (1 thread, TorchScript).

Timed alternately in the same run (so their ratios hold even on a busy machine; the
rolypoly~ v2 size, a reference whose weights would flush the cache the live model keeps on
stage, in its own pass afterwards):

* **step**: one row of the incremental model (``Runtime.step``: the decoder's one-row pass
  over its key/value cache), the cost of each new row live: the compiled step the engine
  uses (:mod:`rolypoly.model.stepper`) and the file's TorchScript ``step`` as its baseline;
* **tick**: the steps of ``--tick-rows`` rows at once (all rows due in one tick, e.g. a
  beat of 16ths after the worker was held up);
* **window tick**: one ``Runtime.predict`` over a 16-row window, as a window model (today's
  model, ``models/rolypoly_v1.pt``) is run every tick, and the same for the rolypoly~ v2
  size (12+12 layers, d_model 128, ff 2048; untrained weights: speed does not depend on them).

The score is re-encoded (``reset``) when the steps reach its end; that pass happens when a
score is read, never on the audio path, and is timed separately.
"""
from __future__ import annotations

#: Consecutive timed calls of one measurement before switching to the next.
BLOCK = 20

HELP = "step/tick latency (p50/p99) of the incremental model vs window ticks of today's model and the v2 size"


def add_arguments(parser) -> None:
    parser.add_argument("--ticks", type=int, default=1000, help="timed iterations per model (>= 500; default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed iterations first (default 50)")
    parser.add_argument("--model", default=None,
                        help="TorchScript file of the incremental model (default: engine.model_path if it steps, "
                             "else an untrained model of the rolypoly_inc size)")
    parser.add_argument("--baseline", default="models/rolypoly_v1.pt",
                        help="window model timed for comparison (default: models/rolypoly_v1.pt; an untrained "
                             "model of the rolypoly size if missing)")
    parser.add_argument("--tick-rows", type=int, default=4, help="rows stepped in one timed tick (default 4)")


def _percentiles(ms):
    import numpy as np
    a = np.asarray(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.mean())


def _untrained(name: str, tmp, cfg_name: str):
    from rolypoly.config import load_config
    from rolypoly.model.export import export_torchscript, load_runtime
    from rolypoly.model.transformer import build_model
    conf = load_config([f"model={cfg_name}"]).model
    return load_runtime(export_torchscript(build_model(conf), {"version": f"bench-{cfg_name}"}, tmp / f"{name}.pt"))


def run(cfg, args):
    import tempfile
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from rolypoly.errors import ConfigError
    from rolypoly.model.export import load_runtime
    from rolypoly.report import Table

    if args.ticks < 500:
        raise ConfigError(f"--ticks {args.ticks}: use at least 500 ticks for a meaningful p99")
    if args.tick_rows < 1:
        raise ConfigError(f"--tick-rows {args.tick_rows}: must be >= 1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="rolypoly-bench-"))

    path = args.model or str(cfg.engine.model_path)
    inc = load_runtime(path) if Path(path).is_file() else None
    if inc is None or not inc.supports_step:
        if args.model:
            raise ConfigError(f"--model {args.model}: not an incremental model (no step methods)")
        inc_name, inc = "untrained rolypoly_inc", _untrained("inc", tmp, "rolypoly_inc")
    else:
        inc_name = Path(path).name
    # the same file stepped by its TorchScript step: the baseline of the compiled one
    plain = load_runtime(inc.path, compiled=False)
    base = load_runtime(args.baseline) if Path(args.baseline).is_file() else None
    base_name = Path(args.baseline).name if base is not None else "untrained rolypoly"
    if base is None:
        base = _untrained("v1", tmp, "rolypoly")
    big = _untrained("v2", tmp, "rolypoly_v2")

    rng = np.random.default_rng(0)
    score = rng.random((2048, 22)).astype(np.float32)
    window = rng.random((16, 22)).astype(np.float32)
    t0 = time.perf_counter()
    inc.reset(score)
    reset_ms = (time.perf_counter() - t0) * 1000.0
    plain.reset(score)
    next_row = {id(inc): 0, id(plain): 0}

    def ensure(rt, rows: int) -> None:
        """Re-encode (untimed) before the steps would run past the score's end."""
        if rt is not None and next_row[id(rt)] + rows > len(score):
            rt.reset(score)
            next_row[id(rt)] = 0

    def steps(rt, rows: int):
        def run_rows():
            for _ in range(rows):
                k = next_row[id(rt)]
                rt.step(score[k - 1] if k else None, score[k])
                next_row[id(rt)] = k + 1
        return run_rows

    how = "compiled" if inc.compiled_step else "TorchScript: the file exports no step_weights"
    # (summary key, table name, timed call, runtime it steps, rows it steps, parameters)
    measurements = [
        ("step", f"step ({inc_name}, {how})", steps(inc, 1), inc, 1, _count(inc)),
        ("tick", f"tick of {args.tick_rows} rows ({inc_name}, {how})", steps(inc, args.tick_rows), inc,
         args.tick_rows, _count(inc)),
        ("window_tick", f"16-row window tick ({base_name})", lambda: base.predict(window), None, 0, _count(base)),
        ("v2_size_window_tick", "16-row window tick (rolypoly_v2 size, untrained)", lambda: big.predict(window),
         None, 0, _count(big)),
        ("torchscript_step", f"step ({inc_name}, TorchScript step)", steps(plain, 1), plain, 1, _count(inc)),
    ]
    for _, _, call, rt, rows, _ in measurements:
        for _ in range(args.warmup):
            ensure(rt, rows)
            call()
    times = {m[0]: [] for m in measurements}
    # Alternate the measurements in blocks of BLOCK so that load from other processes hits all
    # alike, while each one runs with its own weights in cache as it does live (one call each
    # way would time the small models with caches the 15 M-parameter one just evicted).
    # The rolypoly~ v2 size is a reference only: its 60 MB of weights would flush the cache the
    # live model keeps to itself on stage, so it is timed in its own pass after the others.
    live = [m for m in measurements if m[0] != "v2_size_window_tick"]
    reference = [m for m in measurements if m[0] == "v2_size_window_tick"]
    passes = [live] * len(range(0, args.ticks, BLOCK)) + [reference] * len(range(0, args.ticks, BLOCK))
    for group in passes:
        for key, _, call, rt, rows, _ in group:
            for _ in range(BLOCK):
                ensure(rt, rows)
                t0 = time.perf_counter()
                call()
                times[key].append((time.perf_counter() - t0) * 1000.0)
    table = Table("the model on the live path (batch 1, 1 thread, TorchScript)",
                  ["measurement", "parameters", "p50 (ms)", "p99 (ms)", "mean (ms)", "p50 ratio to window tick"])
    ref = _percentiles(times["window_tick"])[0]
    summary = {}
    for key, name, _, _, _, params in measurements:
        p50, p99, mean = _percentiles(times[key])
        table.add(name, params, p50, p99, mean, p50 / ref)
        summary[f"{key}_p50_ms"], summary[f"{key}_p99_ms"] = p50, p99
    table.notes.append(f"{len(times['step'])} timed iterations each after {args.warmup} warm-up ones, "
                       f"interleaved in blocks of {BLOCK}; "
                       f"torch {torch.__version__}, {torch.get_num_threads()} thread; incremental model "
                       f"receptive field {inc.window} rows; encoding a {len(score)}-row score (reset, off the "
                       f"audio path) took {reset_ms:.1f} ms")
    sp, tp = summary["step_p99_ms"], summary["tick_p99_ms"]
    table.notes.append(f"targets: step p99 <= 0.5 ms -> {'met' if sp <= 0.5 else 'MISSED'} ({sp:.3f} ms); "
                       f"tick p99 <= 1 ms -> {'met' if tp <= 1.0 else 'MISSED'} ({tp:.3f} ms; must <= 3 ms)")
    summary["compiled_step"] = inc.compiled_step
    summary["step_speedup"] = summary["torchscript_step_p50_ms"] / summary["step_p50_ms"]
    summary["reset_ms"] = reset_ms
    summary["tick_rows"] = args.tick_rows
    return [table], summary


def _count(rt) -> int:
    """Parameter count of a frozen module (weights are constants, not parameters)."""
    import json

    import numpy as np
    n = sum(int(np.prod(p.shape)) for p in rt.module.parameters())
    if n:
        return n
    try:
        from rolypoly.model.transformer import ModelConfig, count_params
        conf = json.loads(rt.module.layout_json).get("model_config") or {}
        return count_params(ModelConfig.from_cfg(conf)) if conf else 0
    except Exception:  # a foreign module may not say; the count is informative only
        return 0
