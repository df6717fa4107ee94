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


def prepare(args, cfg) -> int:
    import time

    import numpy as np

    from rolypoly.report import Table, emit
    from rolypoly.score.gmd import SPLITS, resolve_root
    from rolypoly.score.gmd import prepare as prepare_gmd
    root = resolve_root(cfg.data)
    table = Table(f"GMD prepared from {root}", ["grid", "split", "takes", "rows", "hits", "hours", "cache"])
    extra = {}
    for grid in ("16+24", "16"):
        t0 = time.perf_counter()
        takes, cache_file, built = prepare_gmd(root, cfg.cache_dir, grid, float(cfg.data.min_duration_s))
        extra[f"seconds_{grid}"] = round(time.perf_counter() - t0, 2)
        for split in SPLITS:
            s = takes.split(split)
            table.add(grid, split, len(s), s.n_rows, int((s.arrays["vel"] > 0).sum()),
                      round(float(np.sum(s.meta["duration"])) / 3600, 2),
                      ("built " if built else "cached ") + str(cache_file))
    emit(table, as_json=args.json, extra=extra)
    return 0
