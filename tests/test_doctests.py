"""Every docstring example in rolypoly runs (those marked ``# doctest: +SKIP`` stay skipped)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rolypoly

MODULES = sorted(m.name for m in pkgutil.walk_packages(rolypoly.__path__, "rolypoly.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    from tests.conftest import REPO
    monkeypatch.chdir(REPO)  # examples name bundled files relative to the checkout
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    report: list[str] = []
    for t in tests:
        runner.run(t, out=report.append)
    failed = runner.summarize(verbose=False).failed
    assert failed == 0, f"{failed} docstring example(s) of {name} failed:\n" + "".join(report)
