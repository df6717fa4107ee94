"""A take cut short by a crash: its journal, its recovery into a normal take, and the CLI for both."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, meter, note, tempo, write_midi

from rolypoly.config import load_config
from rolypoly.errors import TakeError
from rolypoly.live.engine import Rolypoly
from rolypoly.live.takes import ROW_FIELDS, load_take, partial_takes, recover_take

PPQ = 480
SR = 48000


def eighths_score(path, bars=6, bpm=120):
    """Eighth notes for ``bars`` bars: enough rows that a crash lands among them."""
    ev = [tempo(0, bpm), meter(0, 4, 4)]
    for i in range(bars * 8):
        ev += note(i * PPQ // 2, (36, 42, 38, 42)[i % 4], vel=50 + 7 * (i % 8))
    return write_midi(path, [ev])


def clicks(score_path, n_samples):
    """A click on every row of the score (so the listener hears onsets), in take samples."""
    from rolypoly.score.midi import read_score
    sc = read_score(score_path)
    x = np.zeros(n_samples, np.float32)
    rng = np.random.default_rng(1)
    for t in sc.times_ms:
        a = int(t * SR / 1000) + 60
        if a + 400 < n_samples:
            x[a:a + 400] += rng.normal(0, 0.3, 400).astype(np.float32) * np.exp(-np.arange(400) / 80)
    return x


def make_engine(root):
    return Rolypoly(load_config([f"takes_dir={root}", "engine.enable=false", f"models_dir={root.parent / 'models'}"]),
                    offline=True)


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


class Crash:
    """What a crash at one moment of an offline take leaves: a copy of the hidden folder, named for a dead process."""

    def __init__(self, eng, dest_root, extra_blocks, run_block):
        w = eng.reader.writer
        w.sync()   # what the writer does every second on its own
        self.rows = eng.reader.rowlog.done
        self.onsets = list(eng.reader.onsets)
        self.hits = list(eng.reader.hits)
        for _ in range(extra_blocks):   # audio past the last header update: on disk, not yet in the header
            run_block()
        self.frames_in, self.frames_drums = w.frames_in, w.frames_drums
        dest_root.mkdir(parents=True, exist_ok=True)
        self.path = dest_root / f"{w.folder.name.rsplit('-', 1)[0]}-{dead_pid()}"
        shutil.copytree(w.folder, self.path)
        self.live_folder = w.folder


def play_with_crash(tmp_path, crash_at_s=6.0, extra_blocks=5):
    """Play a whole offline take block by block, simulating a crash at ``crash_at_s``; returns (take, crash)."""
    root = tmp_path / "takes"
    score = eighths_score(tmp_path / "s.mid")
    eng = make_engine(root)
    assert eng.message("read", str(score))
    assert eng.message("start")
    sched = eng.schedule
    total = int(sched.length_samples) + SR
    audio = clicks(score, total + eng.block_frames)
    B = eng.block_frames
    state = {"b0": 0}
    out = np.zeros((B, 2), np.float32)

    def run_block():
        b0 = state["b0"]
        eng.process(audio[b0:b0 + B].copy(), out)
        eng.pump()
        state["b0"] = b0 + B

    crash = None
    while state["b0"] < total:
        run_block()
        if crash is None and state["b0"] >= crash_at_s * SR:
            crash = Crash(eng, tmp_path / "crashed", extra_blocks, run_block)
            # the engine's own hidden folder: its process (this one) is alive
            with pytest.raises(TakeError, match="still running"):
                recover_take(crash.live_folder, tmp_path / "elsewhere")
            assert crash.live_folder.is_dir() and not (tmp_path / "elsewhere").exists()
    assert eng.message("stop")
    return load_take(eng.last_take), crash


@pytest.fixture
def crashed(tmp_path):
    return play_with_crash(tmp_path)


def test_recovered_take_holds_what_was_played_before_the_crash(tmp_path, crashed):
    full, crash = crashed
    assert 0 < crash.rows < full.n_rows
    assert len(crash.onsets) > 2      # the clicks were heard
    took = recover_take(crash.path, tmp_path / "recovered")
    assert not crash.path.exists() and took.parent == tmp_path / "recovered"
    assert took.name == crash.path.name.split("-", 1)[1].rsplit("-", 1)[0]   # named by when it started
    rec = load_take(took)
    assert rec.settings["recovered"] is True and "recovered" not in full.settings
    assert rec.n_rows == crash.rows == rec.settings["rows_played"]
    for f in ROW_FIELDS:
        np.testing.assert_array_equal(rec.rows[f], full.rows[f][:crash.rows], err_msg=f)
    assert rec.onsets == crash.onsets == full.onsets[:len(crash.onsets)]
    assert rec.hits == crash.hits == full.hits[:len(crash.hits)]
    # the settings are the take's own (score, rate, block) with the lengths found
    for key in ("score", "sample_rate", "block_frames", "loop", "countin_samples"):
        assert rec.settings[key] == full.settings[key]
    assert (rec.settings["input_frames"], rec.settings["drums_frames"]) == (crash.frames_in, crash.frames_drums)
    # every frame written, the ones after the last header update included, and the same audio as the full take
    x, sr = sf.read(str(took / "input.wav"), dtype="float32")
    d, _ = sf.read(str(took / "drums.wav"), dtype="float32")
    assert sr == SR and len(x) == crash.frames_in and len(d) == crash.frames_drums
    xf, _ = sf.read(str(full.path / "input.wav"), dtype="float32")
    df, _ = sf.read(str(full.path / "drums.wav"), dtype="float32")
    np.testing.assert_array_equal(x, xf[:len(x)])
    np.testing.assert_array_equal(d, df[:len(d)])
    assert (took / "score.mid").read_bytes() == (full.path / "score.mid").read_bytes()
    assert not (took / "journal").exists()


def test_finished_take_carries_no_journal(crashed):
    full, _ = crashed
    assert not (full.path / "journal").exists()
    assert not any(p.name.startswith(".") for p in full.path.iterdir())


def test_truncated_last_line_is_dropped_and_a_bad_middle_line_is_an_error(tmp_path, crashed):
    _, crash = crashed
    bad = tmp_path / "crashed" / (crash.path.name.rsplit("-", 1)[0] + f"-{dead_pid()}")
    shutil.copytree(crash.path, bad)
    with open(crash.path / "journal" / "onsets.jsonl", "a") as f:
        f.write('{"tau_ms": 3.25, "ro')            # the crash cut the line
    rec = load_take(recover_take(crash.path, tmp_path / "takes"))
    assert rec.onsets == crash.onsets
    lines = (bad / "journal" / "hits.jsonl").read_text().splitlines(keepends=True)
    lines.insert(1, "{not json\n")
    (bad / "journal" / "hits.jsonl").write_text("".join(lines))
    with pytest.raises(TakeError, match=r"hits\.jsonl:2"):
        recover_take(bad, tmp_path / "takes")
    assert (bad / "journal").is_dir() and not (bad / "rows.npz").exists()   # left as it was


def test_nothing_existing_is_overwritten(tmp_path, crashed):
    _, crash = crashed
    stamp = crash.path.name.split("-", 1)[1].rsplit("-", 1)[0]
    root = tmp_path / "mine"
    for name in (stamp, f"{stamp}-1"):
        (root / name).mkdir(parents=True)
    (root / stamp / "keep.txt").write_text("a user's file")
    took = recover_take(crash.path, root)
    assert took.name == f"{stamp}-2"
    assert (root / stamp / "keep.txt").read_text() == "a user's file"
    assert list((root / f"{stamp}-1").iterdir()) == []   # even an empty folder is left alone
    assert load_take(took).settings["recovered"]


def test_what_cannot_be_recovered_is_named(tmp_path):
    root = tmp_path / "takes"
    old = root / f".partial-20260101-101010-{dead_pid()}"    # an older rolypoly's: audio only
    old.mkdir(parents=True)
    sf.write(str(old / "input.wav"), np.zeros(4800, np.float32), SR, subtype="FLOAT")
    with pytest.raises(TakeError, match=r"\.partial-20260101-101010-\d+: no journal"):
        recover_take(old, root)
    with pytest.raises(TakeError, match="not a partial take"):
        recover_take(tmp_path, root)
    (p,) = partial_takes(root)
    assert not p.alive and not p.recoverable and "no journal" in p.why
    assert p.input_frames == 4800 and p.rows == 0
    assert old.is_dir()


def test_listed_and_recovered_from_the_command_line(tmp_path, crashed):
    _, crash = crashed
    root = tmp_path / "crashed"
    shutil.copytree(crash.path, root / (crash.path.name.rsplit("-", 1)[0] + f"-{dead_pid()}"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "rolypoly", *args, f"takes_dir={root}"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, check=False)
        return r.returncode, r.stdout, r.stderr

    rc, out, err = cli("takes", "list", "--json")
    assert rc == 0, err
    listed = json.loads(out)["takes"]
    assert [t["status"] for t in listed] == ["crashed", "crashed"]
    assert all(t["rows"] == crash.rows and t["audio_s"] == pytest.approx(crash.frames_in / SR, abs=1e-3)
               for t in listed)
    rc, out, err = cli("takes", "recover", "nowhere")
    assert rc == 2 and "nowhere" in err
    rc, out, err = cli("takes", "recover", "--all", "--json")
    assert rc == 0, err
    rec = json.loads(out)["recovered"]
    assert [r["result"] for r in rec] == ["recovered", "recovered"]
    assert len({r["take"] for r in rec}) == 2 and all(r["rows"] == crash.rows for r in rec)
    rc, out, err = cli("takes", "list", "--json")
    assert [t["status"] for t in json.loads(out)["takes"]] == ["recovered", "recovered"]


CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from pathlib import Path
    from rolypoly.config import load_config
    from rolypoly.live.engine import Rolypoly
    root, score = Path(sys.argv[1]), sys.argv[2]
    eng = Rolypoly(load_config([f"takes_dir={root}", "engine.enable=false"]), offline=True)
    eng.message("read", score)
    eng.message("start")
    w = eng.reader.writer
    inp, out = np.zeros(eng.block_frames, np.float32), np.zeros((eng.block_frames, 2), np.float32)
    t0 = time.monotonic()
    while w.chunks_written < 2 and time.monotonic() - t0 < 60:   # the writer's own syncs, a second apart
        eng.process(inp, out)
        time.sleep(0.0005)
    print(json.dumps({"frames_in": w.frames_in, "chunks": w.chunks_written}), flush=True)
    time.sleep(600)
""")


def test_a_killed_process_leaves_a_recoverable_take(tmp_path):
    root = tmp_path / "takes"
    score = eighths_score(tmp_path / "s.mid", bars=16)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(score)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        state = json.loads(line)
        (p,) = partial_takes(root)
        assert p.alive and not p.recoverable
        with pytest.raises(TakeError, match="still running"):
            recover_take(p.path, root)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert state["chunks"] >= 2
    (p,) = partial_takes(root)
    assert not p.alive and p.recoverable and p.input_frames == state["frames_in"]
    rec = load_take(recover_take(p.path, root))
    assert rec.settings["recovered"] and rec.settings["input_frames"] == state["frames_in"]
    # the same rows as a take of the same score played through in this process
    eng = make_engine(tmp_path / "again")
    eng.message("read", str(score))
    from rolypoly.live.drivers import perform_offline
    full = load_take(perform_offline(eng).take_dir)
    assert 0 < rec.n_rows < full.n_rows
    for f in ("k", "score_row", "time_ms", "real_vel", "real_off", "has_onset"):
        np.testing.assert_array_equal(rec.rows[f], full.rows[f][:rec.n_rows], err_msg=f)
