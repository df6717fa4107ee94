"""``rolypoly plot TAKE [TAKE ...]``: groove plots of takes (see :mod:`rolypoly.plots`)."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser(
        "plot", parents=[common], help="draw a take's groove: score grid, musician onsets, each drum's offsets (PNG)",
        description="Draw one or more takes stacked on one time axis (e.g. the take before finetuning and the "
                    "take after): the score grid, the musician's onsets and each drum's hits coloured by their "
                    "offset in ms, then each drum's offsets over time with the musician's. Example: rolypoly plot "
                    "20261201-101500 20261201-102000 --labels before,after -o groove.png")
    p.add_argument("takes", nargs="+", metavar="TAKE", help="take folders or names under takes_dir")
    p.add_argument("-o", "--output", default=None, help="PNG to write (default: outputs_dir/plots/<first take>.png)")
    p.add_argument("--labels", default=None, help="comma-separated label per take (e.g. before,after)")
    p.add_argument("--seconds", default=None, metavar="START-END", help="time span to show, e.g. 0-10")
    p.add_argument("--force", action="store_true", help="replace OUTPUT when it exists")
    p.set_defaults(func=run)


def run(args, cfg) -> int:
    from pathlib import Path

    from rolypoly.commands.live import resolve_take
    from rolypoly.errors import ConfigError
    from rolypoly.io import check_output
    from rolypoly.plots import plot_takes
    from rolypoly.report import Table, emit
    takes = [resolve_take(cfg, t) for t in args.takes]
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(takes):
        raise ConfigError(f"--labels: {len(labels)} labels for {len(takes)} takes")
    span = None
    if args.seconds:
        try:
            lo, hi = (float(v) for v in args.seconds.split("-", 1))
            assert 0 <= lo < hi
        except (ValueError, AssertionError):
            raise ConfigError(f"--seconds: expected START-END with 0 <= START < END, got {args.seconds!r}") from None
        span = (lo, hi)
    out = check_output(args.output or Path(cfg.outputs_dir) / "plots" / f"{takes[0].name}.png", args.force,
                       suffixes=(".png",))
    plot_takes(takes, out, labels=labels, span_s=span)
    t = Table("plot", ["output", "takes"], key="plot")
    t.add(str(out), len(takes))
    emit(t, as_json=args.json, extra={"output": str(out)})
    return 0
