"""``rolypoly bench <name>``: every benchmark, one module each in :mod:`rolypoly.bench`."""
from __future__ import annotations

import importlib
import pkgutil


def register(sub, common) -> None:
    import rolypoly.bench as bench_pkg
    parser = sub.add_parser("bench", parents=[common], help="speed and quality benchmarks (tables; --json)")
    bsub = parser.add_subparsers(dest="bench", metavar="<benchmark>")
    parser.set_defaults(subparser=parser)
    for info in sorted(pkgutil.iter_modules(bench_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"rolypoly.bench.{info.name}")
        p = bsub.add_parser(info.name, parents=[common], help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(func=_runner(module))


def _runner(module):
    def handler(args, cfg):
        from rolypoly.report import emit
        tables, extra = module.run(cfg, args)
        emit(tables, as_json=args.json, extra=extra)
        return 0
    return handler
