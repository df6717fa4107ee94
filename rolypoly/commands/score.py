"""``rolypoly score SCORE.mid``: print a score's rows."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("score", parents=[common], help="print the rows of a MIDI drum score",
                       description="Read the drum part of a MIDI file (channel 10 or a drum track) and print "
                                   "one row per distinct onset time: time, bar, phase, tempo, meter, hits.")
    p.add_argument("path", help="a .mid file")
    p.add_argument("--limit", type=int, default=0, help="print at most this many rows (0 = all)")
    p.set_defaults(func=run)


def run(args, cfg) -> int:
    import warnings

    from rolypoly.report import Table, emit
    from rolypoly.score.midi import read_score
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = read_score(args.path, merge_tolerance_ms=float(cfg.data.merge_tolerance_ms))
    table = Table(f"score {args.path}", ["row", "time_ms", "bar", "phase", "bpm", "tsig", "hits"], key="rows")
    rows = score.summary_rows()
    for row in rows[: args.limit or None]:
        table.add(*row)
    table.notes.extend(str(w.message) for w in caught)
    emit(table, as_json=args.json, extra={"n_rows": score.n_rows, "bars": int(score.bar[-1]) + 1,
                                          "length_ms": round(score.length_ms, 3),
                                          "unknown_pitches": score.unknown_pitches})
    return 0
