"""``rolypoly demo``: the main job on bundled material (no sound card needed)."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common], help="run the offline duet demo on the bundled score",
                       description="Play the bundled demo score (data/demo.mid) with a virtual musician, offline, "
                                   "and write the results under outputs/demo/.")
    p.add_argument("--score", default=None, help="a different score to use (default data/demo.mid)")
    p.set_defaults(func=run)


def run(args, cfg) -> int:
    from rolypoly.sim.demo import run_demo
    return run_demo(cfg, score_path=args.score, as_json=args.json)
