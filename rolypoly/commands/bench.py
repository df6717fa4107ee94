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
        p.add_argument("--keep-work", action="store_true",
                       help="keep the benchmark's work files (takes, model versions) instead of removing them")
        p.set_defaults(func=_runner(module, info.name))


def _runner(module, name: str):
    def handler(args, cfg):
        import shutil
        import sys
        import tempfile

        from rolypoly.report import emit
        # Every temporary folder a benchmark makes goes into one scratch folder, removed at the
        # end: a duet bench writes takes and model versions by the gigabyte, and a disk filled
        # by old runs stops everything else (checkpoints included).
        scratch = tempfile.mkdtemp(prefix=f"rolypoly-bench-{name}-")
        previous, tempfile.tempdir = tempfile.tempdir, scratch
        try:
            tables, extra = module.run(cfg, args)
        finally:
            tempfile.tempdir = previous
            if args.keep_work:
                print(f"work files kept in {scratch}", file=sys.stderr)
            else:
                shutil.rmtree(scratch, ignore_errors=True)
        emit(tables, as_json=args.json, extra=extra)
        return 0
    return handler
