"""``rolypoly data prepare``: quantise the Groove MIDI Dataset into cached rows."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("data", parents=[common], help="prepare training data (GMD)")
    dsub = p.add_subparsers(dest="data_command", metavar="<action>")
    p.set_defaults(subparser=p)
    prep = dsub.add_parser("prepare", parents=[common], help="quantise GMD and cache the rows",
                           description="Read info.csv and every MIDI file under data.root, quantise onsets to the "
                                       "16th/triplet grid with offsets, and cache the result (instant when cached). "
                                       "Example: rolypoly data prepare data.root=~/groove")
    prep.set_defaults(func=prepare)
    oc = dsub.add_parser("onsets-corpus", parents=[common],
                         help="render the listener's development corpus (FluidSynth + Hydrogen kits) into cache/",
                         description="Render humanised parts for nine instrument families through FluidSynth "
                                     "(FluidR3 GM) and Hydrogen drum kits, with measured attack delays as ground "
                                     "truth; resumable (finished chunks are kept). Example: rolypoly data "
                                     "onsets-corpus --minutes 2 --part 0/2")
    oc.add_argument("--minutes", type=float, default=2.0, help="minutes of playing per family (default 2)")
    oc.add_argument("--families", default=None, help="comma-separated families (default all)")
    oc.add_argument("--part", default="0/1", help="i/n: build every n-th chunk from i (parallel processes)")
    oc.set_defaults(func=onsets_corpus)
    tr = dsub.add_parser("train-onsets", parents=[common],
                         help="train the onset network on the onsets corpus (leave-one-family-out, then all)",
                         description="Train the small causal onset network (rolypoly.ears.network) on the corpus "
                                     "of `rolypoly data onsets-corpus`: one model per held-out family (scored on "
                                     "it, saved to models/onsets_lofo.npz), then one on every family "
                                     "(models/onsets.pt). One thread. Example: rolypoly data train-onsets --steps 800")
    tr.add_argument("--steps", type=int, default=800, help="optimiser steps per model (default 800)")
    tr.add_argument("--families", default=None, help="comma-separated held-out families (default all)")
    tr.add_argument("--no-lofo", action="store_true", help="only the model on all families")
    tr.add_argument("--no-all", action="store_true", help="only the held-out folds (models/onsets_lofo.npz)")
    tr.add_argument("--out", default=None, help="model file (default models/onsets.pt)")
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=train_onsets)


def prepare(args, cfg) -> int:
    import time

    import numpy as np

    from rolypoly.report import Table, emit
    from rolypoly.score.gmd import SPLITS, resolve_root
    from rolypoly.score.gmd import prepare as prepare_gmd
    root = resolve_root(cfg.data)
    table = Table(f"GMD prepared from {root}", ["grid", "split", "takes", "rows", "hits", "hours", "cache"],
                  key="splits")
    extra = {"root": str(root)}
    for grid in ("16+24", "16"):
        t0 = time.perf_counter()
        takes, cache_file, built = prepare_gmd(root, cfg.cache_dir, grid, float(cfg.data.min_duration_s))
        extra[f"seconds_grid_{grid.replace('+', '_')}"] = round(time.perf_counter() - t0, 2)
        for split in SPLITS:
            s = takes.split(split)
            table.add(grid, split, len(s), s.n_rows, int((s.arrays["vel"] > 0).sum()),
                      round(float(np.sum(s.meta["duration"])) / 3600, 2),
                      ("built " if built else "cached ") + str(cache_file))
    emit(table, as_json=args.json, extra=extra)
    return 0


def onsets_corpus(args, cfg) -> int:
    from rolypoly.ears.corpus import build, default_root
    from rolypoly.errors import ConfigError
    from rolypoly.report import Table, emit
    try:
        i, n = (int(v) for v in args.part.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise ConfigError(f"--part: expected i/n with 0 <= i < n, got {args.part!r}") from None
    root = default_root(cfg.cache_dir)
    families = args.families.split(",") if args.families else None
    metas = build(root, args.minutes, families, (i, n))
    table = Table(f"onsets corpus in {root}", ["family", "chunks", "onsets", "minutes"], key="families")
    import json
    per: dict = {}
    for m in metas:
        info = json.loads(m.read_text())
        row = per.setdefault(info["family"], [0, 0, 0.0])
        row[0] += 1
        row[1] += info["n_onsets"]
        row[2] += info["seconds"] / 60.0
    for fam, (c, o, mins) in sorted(per.items()):
        table.add(fam, c, o, round(mins, 2))
    emit(table, as_json=args.json, extra={"root": str(root)})
    return 0


def train_onsets(args, cfg) -> int:
    import sys
    from pathlib import Path

    from rolypoly.ears import network, train
    from rolypoly.ears.corpus import default_root, load
    from rolypoly.report import Table, emit
    items = load(default_root(cfg.cache_dir))
    out_model = Path(args.out) if args.out else network.MODEL_FILE
    res = train.run(items, steps=args.steps, families=args.families.split(",") if args.families else None,
                    lofo=not args.no_lofo, out_model=None if args.no_all else out_model,
                    out_lofo=out_model.with_name(out_model.stem + "_lofo.npz"), seed=args.seed,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    table = Table("onset network: leave-one-family-out (F at ±25 ms, input >= -30 dBFS)",
                  ["family", "onsets", "F@25ms_lofo", "threshold", "latency_ms", "raw_delay_med_ms", "seconds"],
                  key="lofo")
    for fam, r in sorted(res["lofo"].items()):
        table.add(fam, r["onsets"], r["f25"], r["threshold"], r["latency_ms"], r["raw_delay_median_ms"], r["seconds"])
    if "all" in res:
        table.notes.append(f"model on all families: threshold {res['all']['threshold']}, latency "
                           f"{res['all']['latency_ms']:.1f} ms, {res['all']['seconds']:.0f} s -> {out_model}")
    emit(table, as_json=args.json, extra={"lofo_f25": {f: r["f25"] for f, r in res["lofo"].items()},
                                          "all": res.get("all"), "model": str(out_model)})
    return 0
