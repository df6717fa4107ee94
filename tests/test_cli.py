"""The command line: help for every command, --json everywhere, overrides vs arguments, one-line errors."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from rolypoly.cli import build_parser, main, split_argv

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def _commands():
    """Every runnable command path (``["kit", "show"]``, ``["score"]``, ...), nested groups walked."""
    def walk(parser, prefix):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            return [prefix]
        out = [] if parser._defaults.get("func") is None else [prefix]
        for name, p in subs[0].choices.items():
            out.extend(walk(p, prefix + [name]))
        return out
    return walk(build_parser(), [])


COMMANDS = _commands()


def test_the_walk_finds_the_commands():
    names = {" ".join(c) for c in COMMANDS}
    assert {"score", "render", "kit show", "takes list", "introspect ask", "bench osc", "serve", "play"} <= names


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_has_help_with_the_override_rule(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main(cmd + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: rolypoly" in out and "config override" in out and "--json" in out


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_reports_errors_as_json(cmd, where, capsys):
    argv = (["--json"] + cmd if where == "before" else cmd + ["--json"]) + ["--no-such-flag"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["exit_code"] == 2 and ("--no-such-flag" in out["error"] or "required" in out["error"])
    assert captured.err.strip().splitlines()[-1].startswith("rolypoly: error:")


def _keys_snake(obj, where="top"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert SNAKE.match(k), f"JSON key {k!r} at {where} is not snake_case"
            if where != "notes":
                _keys_snake(v, k if k == "notes" else "record")
    elif isinstance(obj, list):
        for v in obj:
            _keys_snake(v, where)


def _harmless(tmp_path):
    """Command lines that run quickly with bundled material: (argv, a key the JSON must hold)."""
    demo = str(REPO_ROOT / "data" / "demo.mid")
    return [
        (["score", demo, "--limit", "2"], "rows"),
        (["kit", "show"], "channels"),
        (["takes", "list", f"outputs_dir={tmp_path}"], "takes"),
        (["render", demo, "-o", str(tmp_path / "r.wav"), "--tail", "0.1"], "render"),
        (["export", "--swing", str(tmp_path / "swing.pt")], "export"),
        (["play", "--list-devices"], "devices"),
    ]


@pytest.mark.parametrize("i", range(6))
def test_harmless_commands_print_one_json_object_with_snake_case_keys(i, tmp_path, capsys):
    argv, key = _harmless(tmp_path)[i]
    rc = main(["--json"] + argv)
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    if rc == 2 and argv[0] == "play":  # no audio system on this machine: the error is JSON too
        assert "error" in out
        return
    assert rc == 0, captured.err
    assert key in out
    _keys_snake(out)


def test_json_before_the_command_is_honoured(capsys):
    assert main(["--json", "score", str(REPO_ROOT / "data" / "demo.mid")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_rows"] > 100 and out["bars"] == 25
    assert out["rows"][0]["time_ms"] == 0 and "kick" in out["rows"][0]["hits"]


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
    assert main(["demo", "--frobnicate"]) == 2
    assert "--frobnicate" in capsys.readouterr().err
    assert main(["demo", "synth.polyphonyy=3"]) == 2   # a typo of a key is named, not read as a file
    assert "did you mean synth.polyphony" in capsys.readouterr().err


def test_overrides_reach_the_config():
    from rolypoly.config import load_config
    cfg = load_config(["model=rolypoly_v2", "train.max_steps=7"])
    assert cfg.model.d_model == 128 and cfg.train.max_steps == 7


def test_the_override_rule():
    args, over, flags = split_argv(["train-take", "T", "1", "1", "1", "finetune.epochs=2", "a=b.mid", "--debug"])
    assert args == ["train-take", "T", "1", "1", "1", "a=b.mid"] and over == ["finetune.epochs=2"]
    assert flags == {"json": False, "debug": True}
    args, over, _ = split_argv(["score", "--", "synth.polyphony=8", "--json"])
    assert over == [] and args == ["score", "--", "synth.polyphony=8", "--json"]


def test_a_file_named_like_an_override_is_read_as_a_file(tmp_path, capsys, monkeypatch):
    import shutil
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(REPO_ROOT / "data" / "demo.mid", tmp_path / "a=b.mid")
    assert main(["score", "a=b.mid", "--json", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["bars"] == 25
    shutil.copyfile(REPO_ROOT / "data" / "demo.mid", tmp_path / "synth.polyphony=8")
    assert main(["score", "--json", "--", "synth.polyphony=8"]) == 0  # after -- it is the command's


def test_debug_reaches_the_config_the_engine_and_bridge_read(monkeypatch, capsys):
    import rolypoly.commands.score as score_cmd
    seen = {}
    monkeypatch.setattr(score_cmd, "run", lambda args, cfg: seen.setdefault("debug", cfg.debug) and 0)
    main(["score", "x.mid"])
    assert seen.pop("debug") is False
    main(["--debug", "score", "x.mid"])
    assert seen["debug"] is True


def test_home_is_expanded_in_file_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    import shutil
    shutil.copyfile(REPO_ROOT / "data" / "demo.mid", tmp_path / "d.mid")
    assert main(["score", "--limit=1", "--json", "~/d.mid"]) == 0  # quoted ~ (the shell did not expand it)


def test_tables_are_not_cut_when_piped():
    env = dict(__import__("os").environ, COLUMNS="40")
    proc = subprocess.run([sys.executable, "-m", "rolypoly", "score", str(REPO_ROOT / "data" / "demo.mid"),
                           "--limit", "3"], capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert proc.returncode == 0
    assert "kick:104 hihat:84 crash:112" in proc.stdout
    assert "…" not in proc.stdout


def test_serve_help_names_every_attribute_the_engine_takes():
    from rolypoly.commands.serve import EPILOG
    from rolypoly.live.engine import ATTRIBUTES
    listed = EPILOG.split("/rolypoly/set", 1)[1].split("/rolypoly/ping", 1)[0].replace("(", " ").replace(")", " ").split()
    assert set(ATTRIBUTES) <= set(listed), sorted(set(ATTRIBUTES) - set(listed))
