"""Command groups of the CLI, one module each, discovered by :mod:`rolypoly.cli`.

A module defines ``register(subparsers, common)``; it adds its parser(s) with
``parents=[common]`` and sets ``func=handler`` where ``handler(args, cfg)`` returns
an exit code (or None for 0).  Handlers stay thin: they call the library.
Imports of heavy libraries (torch, numba) happen inside handlers so ``--help`` is fast.
"""
