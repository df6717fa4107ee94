"""The command line: help for every command, overrides, one-line errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rolypoly.cli import build_parser, main

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    out = []
    for name, p in sub.choices.items():
        out.append([name])
        for a in p._actions:
            if a.__class__.__name__ == "_SubParsersAction":
                out.extend([[name, n] for n in a.choices])
    return out


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c))
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main(cmd + ["--help"])
    assert exc.value.code == 0
    assert "usage: rolypoly" in capsys.readouterr().out


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "nope.mid"
    proc = subprocess.run([sys.executable, "-m", "rolypoly", "score", str(bad)], capture_output=True, text=True,
                          cwd=REPO_ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.mid" in proc.stderr and "Traceback" not in proc.stderr
    dbg = subprocess.run([sys.executable, "-m", "rolypoly", "score", str(bad), "--debug"], capture_output=True,
                         text=True, cwd=REPO_ROOT)
    assert dbg.returncode == 2 and "Traceback" in dbg.stderr


def test_bad_override_and_unknown_argument(capsys):
    assert main(["demo", "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main(["demo", "--frobnicate"]) == 2


def test_overrides_reach_the_config():
    from rolypoly.config import load_config
    cfg = load_config(["model=rolypoly_v2", "train.max_steps=7"])
    assert cfg.model.d_model == 128 and cfg.train.max_steps == 7


def test_score_json_output(capsys):
    assert main(["score", str(REPO_ROOT / "data" / "demo.mid"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] > 100 and out["bars"] == 25
    first = next(iter(v for k, v in out.items() if k.startswith("score")))[0]
    assert first["time_ms"] == 0 and "kick" in first["hits"]
