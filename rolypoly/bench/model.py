"""Latency of one live tick: a window of 16 rows, batch 1, one thread, TorchScript.

The default model (``model=rolypoly`` sizes, or the committed ``models/rolypoly.pt``) and the
``rolypoly_v2`` size (12+12 layers, d_model 128, ff 2048; untrained weights: speed does not
depend on them) are exported the same way and timed alternately in the same run, so their
ratio holds even on a busy machine.
"""
from __future__ import annotations

HELP = "tick latency (p50/p99) of the default model vs the rolypoly_v2 size (TorchScript, 1 thread)"


def add_arguments(parser) -> None:
    parser.add_argument("--ticks", type=int, default=1000, help="timed ticks per model (>= 500; default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed ticks first (default 50)")
    parser.add_argument("--model", default=None,
                        help="TorchScript file for the default model (default: engine.model_path if it exists, "
                             "else an untrained model of the configured size)")


def _percentiles(ms):
    import numpy as np
    a = np.asarray(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.mean())


def run(cfg, args):
    import tempfile
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from rolypoly.config import load_config
    from rolypoly.errors import ConfigError
    from rolypoly.model.export import export_torchscript, load_runtime
    from rolypoly.model.transformer import build_model
    from rolypoly.report import Table

    if args.ticks < 500:
        raise ConfigError(f"--ticks {args.ticks}: use at least 500 ticks for a meaningful p99")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="rolypoly-bench-"))
    runtimes = {}
    default_path = args.model or str(cfg.engine.model_path)
    if Path(default_path).is_file():
        runtimes["default (" + Path(default_path).name + ")"] = load_runtime(default_path)
    else:
        m = build_model(cfg.model)
        runtimes["default (untrained " + str(cfg.model.get("name", "model")) + ")"] = load_runtime(
            export_torchscript(m, {"version": "bench"}, tmp / "default.pt"))
    v2 = load_config(["model=rolypoly_v2"]).model
    runtimes["rolypoly_v2 size (untrained)"] = load_runtime(
        export_torchscript(build_model(v2), {"version": "bench-v2"}, tmp / "v2.pt"))

    rng = np.random.default_rng(0)
    block = 16
    x = rng.random((block, 22)).astype(np.float32)
    names = list(runtimes)
    times = {n: [] for n in names}
    for n in names:
        for _ in range(args.warmup):
            runtimes[n].predict(x)
    # Alternate the models tick by tick so that load from other processes hits both alike.
    for _ in range(args.ticks):
        for n in names:
            t0 = time.perf_counter()
            runtimes[n].predict(x)
            times[n].append((time.perf_counter() - t0) * 1000.0)
    table = Table("one live tick (16 rows, batch 1, 1 thread, TorchScript)",
                  ["model", "parameters", "p50 (ms)", "p99 (ms)", "mean (ms)", "p50 ratio to default"])
    base = _percentiles(times[names[0]])[0]
    summary = {}
    for n in names:
        p50, p99, mean = _percentiles(times[n])
        params = sum(int(np.prod(p.shape)) for p in runtimes[n].module.parameters()) or _count_frozen(runtimes[n])
        table.add(n, params, p50, p99, mean, p50 / base)
        summary[n] = {"p50_ms": p50, "p99_ms": p99}
    table.notes.append(f"{args.ticks} timed ticks per model after {args.warmup} warm-up ticks, interleaved; "
                       f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    p99 = summary[names[0]]["p99_ms"]
    table.notes.append(f"target: default p99 <= 3 ms -> {'met' if p99 <= 3.0 else 'MISSED'} ({p99:.2f} ms)")
    return [table], {"v2_over_default_p50": _percentiles(times[names[1]])[0] / base}


def _count_frozen(rt) -> int:
    """Parameter count of a frozen module (weights are constants, not parameters)."""
    import json
    try:
        from rolypoly.model.transformer import ModelConfig, count_params
        conf = json.loads(rt.module.layout_json).get("model_config") or {}
        return count_params(ModelConfig.from_cfg(conf)) if conf else 0
    except Exception:  # a foreign module may not say; the count is informative only
        return 0
