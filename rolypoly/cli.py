"""``rolypoly <command> [args] [key=value ...]``: the one command-line entry point.

Commands live in :mod:`rolypoly.commands`, one module per group; each module has
``register(subparsers, common)`` and its handlers take ``(args, cfg)``.  This file
only wires them up, turns ``key=value`` tokens into hydra overrides, and turns
:class:`~rolypoly.errors.RolypolyError` into a one-line message and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

from rolypoly import __version__
from rolypoly.errors import RolypolyError


def common_parser() -> argparse.ArgumentParser:
    """Flags every command accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_parser()
    parser = argparse.ArgumentParser(
        prog="rolypoly", parents=[common],
        description="An expressive, introspective AI drum machine. "
                    "Any command takes hydra-style key=value overrides, e.g. model=rolypoly_v2.")
    parser.add_argument("--version", action="version", version=f"rolypoly {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    import rolypoly.commands as commands_pkg
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"rolypoly.commands.{info.name}")
        module.register(sub, common)
    return parser


def split_overrides(rest: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` tokens from anything else argparse did not know."""
    overrides = [r for r in rest if "=" in r and not r.startswith("-")]
    unknown = [r for r in rest if r not in overrides]
    return overrides, unknown


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    debug = getattr(args, "debug", False) or "--debug" in argv
    overrides, unknown = split_overrides(rest)
    if unknown:
        parser.print_usage(sys.stderr)
        print(f"rolypoly: error: unrecognised arguments: {' '.join(unknown)}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        (getattr(args, "subparser", None) or parser).print_help()
        return 0 if args.command is None else 2
    try:
        from rolypoly.config import load_config
        cfg = load_config(overrides)
        rc = args.func(args, cfg)
        return int(rc or 0)
    except RolypolyError as exc:
        if debug:
            traceback.print_exc()
        print(f"rolypoly: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rolypoly: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
