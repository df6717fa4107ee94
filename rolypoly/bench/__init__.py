"""Benchmarks, one module per ``rolypoly bench <name>`` command.

A module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(cfg, args) -> (tables, extra)`` where ``tables`` is a list of
:class:`rolypoly.report.Table` and ``extra`` a dict of summary values; the
command prints them as a table or, with ``--json``, as one JSON object.
Speed is reported as ratios against a baseline measured in the same run where possible.
"""
