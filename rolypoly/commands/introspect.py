"""``rolypoly introspect build|ask|score``: pattern tables and one drum's part from another's."""
from __future__ import annotations

import argparse

_EPILOG = """\
Patterns are 16 characters (32 with introspect.steps=32): x (also X # 1) = hit, - (also . 0) = rest;
spaces and | may separate beats.  A pattern that starts with a rest needs --pattern=----x... (or
dots: ....x...).  Drums: kick snare hihat openhat lowtom midtom hightom crash ride.

examples:
  rolypoly introspect build
  rolypoly introspect ask --from kick --to snare --pattern x---x---x---x---
  rolypoly introspect ask --from snare --next --pattern=----x-------x--- --count 4 --seed 1
  rolypoly introspect score groove.mid --from kick --to snare,hihat -o groove_new.mid
"""


def register(sub, common) -> None:
    parser = sub.add_parser(
        "introspect", parents=[common], help="pattern tables: propose one drum's part from another's",
        description="Build tables of which pattern one drum plays given another's (from GMD train bars), "
                    "ask them for a part, or rewrite a score's parts from one drum's part.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(subparser=parser)
    isub = parser.add_subparsers(dest="introspect_command", metavar="<action>")

    p = isub.add_parser("build", parents=[common], help="build the pattern database (only when its inputs changed)",
                        description="Count GMD train bars (and introspect.extra_midi) into the SQLite pattern "
                                    "database at introspect.db. Skipped when it is up to date unless --force.",
                        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="rebuild even when the database is up to date")
    p.add_argument("--ship", metavar="NPZ", nargs="?", const="data/patterns_gmd_train.npz",
                   help="also write the compact table shipped with the project (GMD train bars; "
                        "default data/patterns_gmd_train.npz), used when GMD is absent")
    p.set_defaults(func=run_build)

    p = isub.add_parser("ask", parents=[common], help="propose a pattern for one drum from another's",
                        description="Draw a pattern for --to given that --from plays --pattern (weighted by the "
                                    "table; --top for the most probable), or with --next the bar after it. "
                                    "Unseen source patterns back off to the nearest seen ones, then to the "
                                    "marginal; the answer says which level answered.",
                        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="src", required=True, metavar="DRUM", help="the drum whose part is given")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", dest="dst", metavar="DRUM[,DRUM]", help="the drum(s) to propose a part for")
    target.add_argument("--next", action="store_true", help="propose the next bar of the --from drum instead")
    p.add_argument("--pattern", required=True, help="the --from drum's pattern, e.g. x---x---x---x---")
    p.add_argument("--count", type=int, default=1, help="ask this many times, each excluding the previous answer")
    p.add_argument("--exclude", metavar="PATTERN", help="never answer this pattern (e.g. the last answer)")
    p.add_argument("--top", action="store_true", help="the most probable pattern instead of a weighted draw")
    p.add_argument("--seed", type=int, help="seed of the draws (default: introspect.seed)")
    p.set_defaults(func=run_ask)

    p = isub.add_parser("score", parents=[common], help="rewrite a score's parts generated from one drum's part",
                        description="Read IN.mid, and bar by bar replace the --to drums' parts with patterns "
                                    "proposed from the --from drum's part; write the new score to -o. Other "
                                    "drums keep their performed timing and velocities.",
                        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="IN.mid", help="the score to read")
    p.add_argument("--from", dest="src", required=True, metavar="DRUM", help="the drum whose part is kept")
    p.add_argument("--to", dest="dst", required=True, metavar="DRUM[,DRUM]", help="the drum(s) to regenerate")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mid", help="where to write the new score (.mid)")
    p.add_argument("--force", action="store_true", help="replace OUT.mid when it exists")
    p.add_argument("--seed", type=int, help="seed of the draws (same seed, same score)")
    p.add_argument("--per-bar", action="store_true",
                   help="draw every bar anew (default: one answer per distinct source pattern)")
    p.set_defaults(func=run_score)


def _open(cfg, args):
    from rolypoly.patterns.introspect import PatternTable
    return PatternTable.open(cfg, show_progress=not args.json)


def run_build(args, cfg) -> int:
    from rolypoly.patterns.introspect import PatternTable, db_path
    from rolypoly.report import Table, emit
    table = PatternTable.open(cfg, rebuild="always" if args.force else "auto", show_progress=not args.json)
    stats = getattr(table, "build_stats", None)
    info = dict(table.info)
    table.close()
    out = Table("pattern database", ["key", "value"], key="pattern_database")
    out.add("path", str(db_path(cfg)))
    if args.ship:
        from rolypoly.patterns.introspect import gmd_train_patterns, write_shipped_table
        per_take, key = gmd_train_patterns(cfg, show_progress=not args.json)
        shipped = write_shipped_table(per_take, key, args.ship)
        out.add("shipped_table", f"{shipped} ({shipped.stat().st_size // 1024} KiB, {len(per_take)} takes)")
    out.add("rebuilt", "yes" if stats else "no (up to date)")
    for key in ("corpus", "steps", "bars", "transitions", "pair_rows", "next_rows", "built", "input_key"):
        out.add(key, info.get(key, ""))
    if stats:
        out.add("seconds", round(stats["seconds"], 2))
    emit(out, as_json=args.json, extra={"rebuilt": bool(stats)})
    return 0


def run_ask(args, cfg) -> int:
    import numpy as np

    from rolypoly.errors import IntrospectError
    from rolypoly.patterns.introspect import (
        _targets,
        check_pattern,
        format_pattern,
        parse_pattern,
    )
    from rolypoly.report import Table, emit
    from rolypoly.score.drums import DRUMS, drum_index
    if args.count < 1:
        raise IntrospectError(f"--count must be at least 1, got {args.count}")
    a = drum_index(args.src)
    targets = [a] if args.next else _targets(a, args.dst)
    pattern = parse_pattern(args.pattern)
    exclude = parse_pattern(args.exclude) if args.exclude else None
    table = _open(cfg, args)
    with table:
        pattern = check_pattern(args.pattern, table.steps)
        if exclude is not None:
            exclude = check_pattern(args.exclude, table.steps)
        seed = args.seed if args.seed is not None else cfg.introspect.seed
        rng = np.random.default_rng(seed)
        out = Table(f"{DRUMS[a]} {format_pattern(pattern, table.steps)}",
                    ["to", "pattern", "level", "probability"], key="answers")
        for b in targets:
            last = exclude
            for _ in range(args.count):
                if args.next:
                    ans = table.next_bar(a, pattern, exclude=last, rng=rng, greedy=args.top)
                else:
                    ans = table.ask(a, b, pattern, exclude=last, rng=rng, greedy=args.top)
                out.add("next " + DRUMS[a] if args.next else DRUMS[b], str(ans), ans.level,
                        round(ans.probability, 4))
                last = ans.pattern
    emit(out, as_json=args.json)
    return 0


def run_score(args, cfg) -> int:
    import warnings
    from collections import Counter

    from rolypoly.patterns.introspect import _targets, apply_parts, plan_parts
    from rolypoly.report import Table, emit
    from rolypoly.score.drums import DRUMS, drum_index
    from rolypoly.score.midi import read_score
    from rolypoly.io import check_output
    check_output(args.output, args.force, suffixes=(".mid", ".midi"))
    a = drum_index(args.src)
    _targets(a, args.dst)  # bad names fail before the database is opened
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = read_score(args.path, merge_tolerance_ms=float(cfg.data.merge_tolerance_ms))
    table = _open(cfg, args)
    with table:
        seed = args.seed if args.seed is not None else cfg.introspect.seed
        plan = plan_parts(score, a, args.dst, table, seed=seed, per_bar=args.per_bar)
        new = apply_parts(score, plan, table.steps)
        steps = table.steps
    new.write_midi(args.output)
    out = Table(f"{args.output}: parts from {DRUMS[a]}", ["drum", "windows", "distinct patterns", "levels"],
                key="parts")
    for b, answers in plan.items():
        got = [x for x in answers if x is not None]
        levels = Counter(x.level for x in got)
        out.add(DRUMS[b], len(got), len({x.pattern for x in got}),
                ", ".join(f"{k} {v}" for k, v in sorted(levels.items())))
    out.notes.extend(str(w.message) for w in caught)
    emit(out, as_json=args.json, extra={"output": str(args.output), "steps": steps, "rows": new.n_rows})
    return 0
