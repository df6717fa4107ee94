"""What a new user tries first: each case ends in a one-line error (exit 2) or works; nothing is overwritten."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rolypoly.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo.mid"


def rolypoly(*args, cwd=None):
    """Run the CLI in a subprocess: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "rolypoly", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rolypoly: error:")
    for n in needles:
        assert n in last, last


def test_render_without_extension_is_refused(tmp_path):
    rc, _, err = rolypoly("render", DEMO, "-o", tmp_path / "out" / "noext")
    one_line_error(rc, err, "must end in .wav")
    assert not (tmp_path / "out" / "noext").exists()


def test_render_with_a_bad_value_is_refused(tmp_path):
    rc, _, err = rolypoly("render", DEMO, "-o", tmp_path / "x.wav", "synth.polyphony=abc")
    one_line_error(rc, err, "synth.polyphony", "abc")


def test_render_never_replaces_a_file_without_force(tmp_path, capsys):
    out = tmp_path / "x.wav"
    out.write_bytes(b"mine")
    assert main(["render", str(DEMO), "-o", str(out), "--tail", "0"]) == 2
    assert out.read_bytes() == b"mine"
    assert main(["render", str(DEMO), "-o", str(out), "--tail", "0", "--force"]) == 0
    import soundfile as sf
    assert sf.info(str(out)).samplerate == 48000
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temporary file left behind


@pytest.fixture()
def guitar_wav(tmp_path):
    import soundfile as sf
    sr = 48000
    t = np.arange(sr * 3) / sr
    x = np.zeros_like(t)
    for k in range(6):  # six plucks
        s = int((0.3 + 0.45 * k) * sr)
        x[s:s + sr // 4] = 0.3 * np.sin(2 * np.pi * 196 * t[:sr // 4]) * np.exp(-t[:sr // 4] * 12)
    path = tmp_path / "guitar.wav"
    sf.write(str(path), x.astype(np.float32), sr)
    return path


def test_soundcheck_out_where_no_folder_can_be_made(tmp_path, guitar_wav):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, _, err = rolypoly("soundcheck", "--input", guitar_wav, "--out", blocker / "x.json")
    one_line_error(rc, err)


def test_soundcheck_out_in_a_new_folder_works_and_is_not_replaced(tmp_path, guitar_wav):
    out = tmp_path / "new_dir" / "x.json"
    assert main(["soundcheck", "--input", str(guitar_wav), "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    assert "gain_db" in first or first
    out.write_text("{}")
    assert main(["soundcheck", "--input", str(guitar_wav), "--out", str(out)]) == 2
    assert out.read_text() == "{}"


def test_introspect_score_never_writes_over_the_score(tmp_path, capsys):
    score = tmp_path / "demo.mid"
    shutil.copyfile(DEMO, score)
    before = score.read_bytes()
    assert main(["introspect", "score", str(score), "--from", "kick", "--to", "snare", "-o", str(score)]) == 2
    assert score.read_bytes() == before
    assert "--force" in capsys.readouterr().err


def test_the_bundled_score_is_never_a_default_target(capsys):
    before = DEMO.read_bytes()
    assert main(["introspect", "score", str(DEMO), "--from", "kick", "--to", "snare", "-o", str(DEMO)]) == 2
    assert DEMO.read_bytes() == before


def test_export_never_replaces_the_shipped_model(tmp_path, capsys):
    shipped = REPO / "models" / "rolypoly.pt"
    before = shipped.stat().st_mtime_ns, shipped.stat().st_size
    # the checkpoint does not even exist: the target is refused before anything is read
    assert main(["export", str(tmp_path / "no.ckpt"), str(shipped)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (shipped.stat().st_mtime_ns, shipped.stat().st_size) == before
    assert main(["export", "--swing", str(REPO / "models" / "swing.pt")]) == 2


def test_a_model_that_is_a_score_gets_a_hint_that_overwrites_nothing(tmp_path):
    rc, _, err = rolypoly("perform", DEMO, "-o", tmp_path / "p", f"engine.model_path={DEMO}")
    one_line_error(rc, err, "not a TorchScript file")
    assert f"export CKPT {DEMO}" not in err and "OUT.pt" in err


def test_introspect_db_pointing_at_a_user_file_is_left_alone(tmp_path, capsys):
    db = tmp_path / "notes.sqlite"
    db.write_text("my notes, not a database")
    rc = main(["introspect", "ask", "--from", "kick", "--to", "snare", "--pattern", "x---x---x---x---",
               f"introspect.db={db}"])
    assert rc == 2
    assert db.read_text() == "my notes, not a database"
    assert "not an SQLite pattern database" in capsys.readouterr().err


def test_kit_import_is_atomic_and_needs_force(tmp_path, capsys):
    from rolypoly.synth import load_kit
    from rolypoly.synth.kit import save_kit
    kit = load_kit(None)
    out = tmp_path / "k.toml"
    save_kit(kit, out)
    assert load_kit(out).name == kit.name
    assert [p.name for p in tmp_path.iterdir()] == ["k.toml"]
    preset = tmp_path / "p.mtpreset"
    preset.write_text("not read: the target is refused first")
    assert main(["kit", "import", str(preset), "-o", str(out)]) == 2
    assert load_kit(out).name == kit.name


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    from rolypoly.io import atomic_path
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash in the middle")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


@pytest.mark.parametrize("override,needle", [
    ("engine.filter_hits=bogus", "engine.filter_hits"),
    ("engine.lookahead_ms=-1", "engine.lookahead_ms"),
    ("audio.sample_rate=abc", "audio.sample_rate"),
    ("engine.model_path=/nonexistent.pt", "/nonexistent.pt"),
])
def test_perform_refuses_what_osc_refuses(tmp_path, override, needle):
    rc, _, err = rolypoly("perform", DEMO, "-o", tmp_path / "p", override, f"outputs_dir={tmp_path}")
    one_line_error(rc, err, needle)
    assert not (tmp_path / "takes").exists() or not any((tmp_path / "takes").iterdir())


def test_the_readme_data_root_override_parses():
    from rolypoly.config import load_config
    assert load_config(["data.root=~/groove"]).data.root == os.path.expanduser("~/groove")


def test_train_take_reads_overrides_as_overrides(tmp_path, capsys):
    rc = main(["train-take", str(tmp_path / "nope"), "finetune.epochs=2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no such take" in err and "weights" not in err


@pytest.mark.slow
def test_takes_land_in_one_folder_listed_from_anywhere(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["perform", str(DEMO), f"outputs_dir={data}", "engine.enable=false"]) == 0
    capsys.readouterr()
    assert not (elsewhere / "takes").exists()
    monkeypatch.chdir(tmp_path)
    assert main(["takes", "list", "--json", f"outputs_dir={data}"]) == 0
    takes = json.loads(capsys.readouterr().out)["takes"]
    assert len(takes) == 1 and takes[0]["score"]
    # a second perform into the same output folder needs --force
    monkeypatch.chdir(elsewhere)
    assert main(["perform", str(DEMO), f"outputs_dir={data}", "engine.enable=false"]) == 2


def test_osc_and_cli_share_the_checks():
    from rolypoly.config import load_config
    from rolypoly.errors import ConfigError, EngineError
    from rolypoly.live.engine import check_message
    for attr, value, key in (("filter_hits", "bogus", "engine.filter_hits=bogus"),
                             ("lookahead", "-1", "engine.lookahead_ms=-1"),
                             ("lookahead", "2001", "engine.lookahead_ms=2001")):
        with pytest.raises(EngineError):
            check_message("set", [attr, value])
        with pytest.raises(ConfigError):
            load_config([key])
    assert check_message("set", ["lookahead", "2000"]) and load_config(["engine.lookahead_ms=2000"])


def test_serve_json_lines(tmp_path):
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "rolypoly", "serve", "--json", "osc.port=0", "osc.audio=off",
                             f"outputs_dir={tmp_path}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "listening" and first["host"] == "127.0.0.1" and first["port"] > 0
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        last = json.loads(proc.stdout.readline())
        assert last["event"] == "stopped" and last["packets"] == 0
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("debug", [False, True])
def test_debug_reaches_the_engines_traceback_branch(debug, capsys):
    from rolypoly.config import load_config
    from rolypoly.live.engine import Rolypoly
    eng = Rolypoly(load_config(["engine.enable=false"] + (["debug=true"] if debug else [])), offline=True)

    def broken(*args):
        raise ZeroDivisionError("a bug")
    eng.read = broken
    assert eng.message("read", "x.mid") is False
    assert "internal error ZeroDivisionError" in eng.last_errors()[-1]
    assert ("Traceback" in capsys.readouterr().err) is debug
