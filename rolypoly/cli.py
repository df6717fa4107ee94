"""``rolypoly <command> [args] [key=value ...]``: the one command-line entry point.

Commands live in :mod:`rolypoly.commands`, one module per group; each module has
``register(subparsers, common)`` and its handlers take ``(args, cfg)``.  This file
only wires them up, tells config overrides from file arguments (:data:`OVERRIDES_HELP`),
and turns :class:`~rolypoly.errors.RolypolyError` into a one-line message and exit code 2
(with ``--json`` also a JSON object ``{"error": ..., "exit_code": 2}`` on stdout).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import sys
import traceback

from rolypoly import __version__
from rolypoly.errors import RolypolyError

OVERRIDES_HELP = """\
config overrides: an argument key=value is a config override when key is a config group
(model=rolypoly_v2) or a key path of the config (synth.polyphony=8, data.root=~/groove);
any other argument, a=b.mid included, is a file or value for the command. After -- every
argument is the command's. Values of text and path keys are taken literally (no quoting
needed, ~ expanded); lists are written [a,b]. --json and --debug go before or after the command.
"""

_FLAGS = ("--json", "--debug")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")


class UsageError(RolypolyError):
    """A command line argparse refuses (a missing argument, an unknown flag)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (so ``--json`` reports it as JSON too), not printed and exited."""

    def error(self, message):
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: {message}")


def common_parser() -> argparse.ArgumentParser:
    """Flags every command accepts."""
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output (one JSON object on stdout)")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors (engine and bridge too)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_parser()
    parser = Parser(
        prog="rolypoly", parents=[common],
        description="An expressive, introspective AI drum machine.",
        epilog=OVERRIDES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rolypoly {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    import rolypoly.commands as commands_pkg
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"rolypoly.commands.{info.name}")
        module.register(sub, common)
    for p in _all_parsers(parser):
        if p is not parser:
            p.epilog = (p.epilog.rstrip() + "\n\n" if p.epilog else "") + OVERRIDES_HELP
            p.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _all_parsers(parser):
    out = [parser]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for p in dict.fromkeys(a.choices.values()):
                out.extend(_all_parsers(p))
    return out


def split_argv(argv: list[str]) -> tuple[list[str], list[str], dict[str, bool]]:
    """(command arguments, config overrides, flags): the rule of :data:`OVERRIDES_HELP`.

    Examples
    --------
    >>> split_argv(["--json", "score", "a=b.mid", "synth.polyphony=8"])
    (['score', 'a=b.mid'], ['synth.polyphony=8'], {'json': True, 'debug': False})
    >>> split_argv(["score", "--", "synth.polyphony=8"])
    (['score', '--', 'synth.polyphony=8'], [], {'json': False, 'debug': False})
    """
    from rolypoly.config import is_override
    args, overrides = [], []
    flags = {"json": False, "debug": False}
    for i, token in enumerate(argv):
        if token == "--":
            args.extend(argv[i:])
            break
        if token in _FLAGS:
            flags[token[2:]] = True
        elif "=" in token and not token.startswith("-") and is_override(token):
            overrides.append(token)
        else:
            args.append(token)
    return args, overrides, flags


def _check_typos(args: list[str]) -> None:
    """A dotted ``group.key=value`` that is no config key and no file is a typo, not a file name."""
    from rolypoly.config import groups
    names = set(groups()) | {"seed", "debug"}
    for token in args:
        if token == "--":
            return
        if _DOTTED.match(token) and token.split(".", 1)[0] in names and not os.path.exists(token):
            from rolypoly.config import load_config
            load_config([token])  # raises the "unknown config key ... did you mean" error


def _expand_home(args) -> None:
    for key, value in vars(args).items():
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, key, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, key, [os.path.expanduser(v) if isinstance(v, str) and v.startswith("~") else v
                                for v in value])


def _fail(message: str, code: int, as_json: bool) -> int:
    print(f"rolypoly: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message, "exit_code": code}))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
    debug = False
    try:
        rest, overrides, flags = split_argv(argv)
        as_json, debug = flags["json"], flags["debug"]
        parser = build_parser()
        args, unknown = parser.parse_known_args(rest)
        args.json, args.debug = as_json, debug
        if unknown:
            _check_typos(unknown)
            parser.print_usage(sys.stderr)
            return _fail(f"unrecognised arguments: {' '.join(unknown)}", 2, as_json)
        if not getattr(args, "func", None) and args.command is not None:
            (getattr(args, "subparser", None) or parser).print_help(sys.stderr)
            return _fail(f"{args.command}: which action? (see the list above)", 2, as_json)
        _check_typos(rest)
        if not getattr(args, "func", None):
            (getattr(args, "subparser", None) or parser).print_help()
            return 0 if args.command is None else 2
        _expand_home(args)
        from rolypoly.config import load_config
        cfg = load_config(overrides + (["debug=true"] if debug else []))
        rc = args.func(args, cfg)
        return int(rc or 0)
    except RolypolyError as exc:
        if debug:
            traceback.print_exc()
        return _fail(str(exc), exc.exit_code, as_json)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, as_json)
    except BrokenPipeError:
        return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
