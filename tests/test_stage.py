"""The stage engine: a compiled audio path, one owner per piece of state, takes of any length."""
from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
from test_engine import make_engine, sparse_score, tiny_model  # noqa: F401  (fixture)

from rolypoly.live.drivers import perform_offline


IR_CHECK = r"""
import json, re, sys
from rolypoly.live import block as blk
process, xrun, shutdown = blk.jack_callbacks()
ir = process.inspect_llvm() if sys.argv[-1] == "jack" else blk.portaudio_callback().inspect_llvm()
calls, cur = {}, None
for line in ir.split("\n"):
    m = re.match(r'define .*@"?([^"(\s]+)', line)
    if m:
        cur = m.group(1)
    for c in re.findall(r'call [^@]*@"?([A-Za-z_][\w.$]*)', line):
        calls.setdefault(c, set()).add(cur)
print(json.dumps({"raises": len(re.findall(r"@\.const\.pickledata\.[\w.]+ = ", ir)),
                  "calls": {c: sorted(f) for c, f in calls.items()}, "defines": ir.count("define ")}))
"""


@pytest.mark.parametrize("which", ["jack", "portaudio"])
def test_audio_callback_is_compiled_without_python_or_allocation(tmp_path, which):
    """The JACK process callback and the block it runs call no Python C-API and allocate nothing.

    Compiled afresh in a subprocess (numba's cache would hide the callees' code).  No
    function can raise (no exception constants), so the wrapper's error branch, the
    only place that could take the GIL, is unreachable.
    """
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    out = subprocess.run([sys.executable, "-c", IR_CHECK, which], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["defines"] > 3           # the callees (the block, the voices) are in the inspected code
    assert info["raises"] == 0           # nothing in the audio path can raise
    calls = info["calls"]
    python = {c: f for c, f in calls.items() if c.startswith(("Py", "_Py", "numba_gil"))}
    assert python and all(all(fn.startswith("cfunc.") for fn in f) for f in python.values()), python
    alloc = [c for c in calls if "alloc" in c.lower() or c in ("malloc", "calloc", "realloc", "NRT_Allocate")]
    assert not alloc, alloc
    assert "jack_port_get_buffer" not in python


@pytest.mark.parametrize("kind", ["jack", "portaudio"])
def test_blocks_keep_coming_while_another_thread_holds_the_gil(tmp_path, jack_server, kind):
    """A Python callback delivers no block while the GIL is held; the compiled ones deliver them all.

    PortAudio runs here through its JACK host API on the dummy server.
    """
    import json

    from rolypoly.live import block as blk
    from rolypoly.live.drivers import JackDriver, PortAudioDriver
    eng = make_engine(tmp_path, offline=False)
    eng.message("read", str(sparse_score(tmp_path)))
    if kind == "jack":
        drv = JackDriver(eng, client_name="rolypoly-gil-test", connect=False).start()
    else:
        import sounddevice as sd
        sd._terminate()
        sd._initialize()   # PortAudio looks for JACK servers when it initialises
        if not any(h["name"].startswith("JACK") and h["devices"] for h in sd.query_hostapis()):
            pytest.skip("PortAudio has no JACK host API here")
        drv = PortAudioDriver(eng).start()
    try:
        data = [{"sample": i, "drum": i % 9, "velocity": 90} for i in range(600_000)]
        time.sleep(0.3)
        b0 = int(eng.stage.ctl[blk.BLOCKS])
        t0 = time.perf_counter()
        json.dumps(data)      # one C call: holds the GIL throughout
        held = time.perf_counter() - t0
        b1 = int(eng.stage.ctl[blk.BLOCKS])
    finally:
        drv.close()
        if kind == "portaudio":
            import sounddevice as sd
            sd._terminate()   # let go of the server before it goes away
            sd._initialize()
    due = held * eng.sr / 128
    assert held > 0.1
    assert b1 - b0 >= 0.5 * due, (b1 - b0, due)


@pytest.fixture()
def jack_server(jack_session):
    return jack_session


def test_soundcheck_during_a_take_is_refused_and_onsets_stay_dated(tmp_path):
    from rolypoly.live.takes import load_take
    from rolypoly.sim.corpus import groove_score
    from rolypoly.sim.duet import virtual_take
    score = groove_score(3, 120.0)
    audio, rows, onsets = virtual_take(score, "laid_back", seed=2)
    eng = make_engine(tmp_path)
    errors = []
    eng.connect("error", errors.append)
    eng.message("read", str(score.write_midi(tmp_path / "g.mid")))
    assert eng.message("start")
    out = np.zeros((128, 2), np.float32)
    half = len(audio) // 2 // 128 * 128
    for b0 in range(0, half, 128):
        eng.process(audio[b0:b0 + 128], out)
        if b0 == 128 * 100:
            listener = eng.reader.listener
            assert not eng.message("soundcheck", 2.0)
            assert "stop the take" in errors[-1]
            assert eng.reader.listener is listener
    # a read during the take stops it and saves it: its onsets are dated from the take's start
    assert eng.message("read", str(sparse_score(tmp_path)))
    take = load_take(eng.last_take)
    heard = np.array([o["time_s"] for o in take.onsets])
    assert len(heard) >= 0.8 * np.sum(onsets < half / 48000 - 0.1)
    nearest = np.min(np.abs(heard[:, None] - onsets[None, :]), axis=1)
    assert np.median(nearest) < 0.02, nearest


def test_offline_output_is_byte_identical_with_a_busy_cpu_and_a_slow_model(tmp_path, tiny_model):  # noqa: F811
    from rolypoly.score.midi import read_score  # noqa: F401
    outs = []
    for i, busy in enumerate((False, True)):
        eng = make_engine(tmp_path / str(i), tiny_model, extra=["engine.lookahead_ms=5"])
        eng.message("read", str(sparse_score(tmp_path)))
        stop = threading.Event()
        spinners = []
        if busy:
            def spin():
                x = 0
                while not stop.is_set():
                    x += 1

            spinners = [threading.Thread(target=spin, daemon=True) for _ in range(2)]
            for t in spinners:
                t.start()
            eng.load()
            real = eng.runtime.predict

            def slow(x):
                time.sleep(0.01)  # a tick slower than the lookahead: offline it must not matter
                return real(x)
            eng.runtime.predict = slow
        noise = np.random.default_rng(1).normal(0, 0.01, 48000 * 6).astype(np.float32)
        res = perform_offline(eng, noise)
        stop.set()
        for t in spinners:
            t.join()
        assert res.late_rows == 0
        outs.append(res.drums.tobytes())
    assert outs[0] == outs[1]


def test_take_audio_is_streamed_and_readable_before_stop(tmp_path):
    import soundfile as sf

    from rolypoly.live.takes import load_take
    eng = make_engine(tmp_path)
    eng.message("read", str(sparse_score(tmp_path)))
    assert eng.message("start")
    out = np.zeros((128, 2), np.float32)
    tone = (0.1 * np.sin(np.arange(128) * 0.2)).astype(np.float32)
    for _ in range(200):
        eng.process(tone, out)
    partial = eng.reader.writer.folder
    eng.reader.writer.sync()
    # what a crash now would leave: the audio so far, readable
    info = sf.info(str(partial / "input.wav"))
    assert info.frames == 200 * 128
    got, _ = sf.read(str(partial / "drums.wav"))
    assert got.shape == (200 * 128, 2) and np.abs(got).max() > 0
    assert partial.name.startswith(".partial-")
    eng.message("stop")
    take = load_take(eng.last_take)
    x, sr = sf.read(str(take.path / "input.wav"), dtype="float32")
    assert len(x) == 200 * 128 and np.allclose(x[:128], tone)
    assert not partial.exists()


def test_a_slow_outlet_receiver_loses_outlets_and_never_blocks(tmp_path):
    eng = make_engine(tmp_path, offline=False)
    release = threading.Event()
    eng.connect("status", lambda text: release.wait(5))
    t0 = time.perf_counter()
    for i in range(20000):
        eng.emit("status", f"event {i}")
    elapsed = time.perf_counter() - t0
    release.set()
    assert eng.outlets_dropped > 0
    assert elapsed < 2.0  # 20,000 emits while the receiver is stuck: the emitter is never held up


def test_countin_plays_clicks_before_the_score(tmp_path):
    from rolypoly.live.engine import COUNTIN_DRUM
    from rolypoly.score.midi import read_score
    plain = make_engine(tmp_path / "plain")
    plain.message("read", str(sparse_score(tmp_path)))
    ref = perform_offline(plain)
    eng = make_engine(tmp_path / "count")
    eng.message("read", str(sparse_score(tmp_path)))
    assert eng.message("set", "countin", 1)
    res = perform_offline(eng)
    bar = int(round(read_score(tmp_path / "s.mid").bar_ms[0] * 48))
    clicks = [h for h in res.hits if h["sample"] < 0]
    assert len(clicks) == 4 and all(h["drum"] == COUNTIN_DRUM for h in clicks)
    assert [h["sample"] for h in clicks] == [-bar, -bar * 3 // 4, -bar // 2, -bar // 4]
    assert sorted((h["sample"], h["drum"]) for h in res.hits if h["sample"] >= 0) == \
        sorted((h["sample"], h["drum"]) for h in ref.hits)
    # the output starts with the count-in: the score's first hit is a bar in
    mono = np.abs(res.drums).sum(1)
    assert mono[:bar - 1].any()
    a, b = res.drums[bar:bar + 4800, 0], ref.drums[:4800, 0]
    assert np.corrcoef(a, b)[0, 1] > 0.9   # the same kick, a bar later (the last click's tail on top)
    assert not eng.message("set", "countin", 1.5)


def test_message_storm_during_a_take(tmp_path):
    eng = make_engine(tmp_path)
    eng.message("read", str(sparse_score(tmp_path)))
    eng.message("start")
    out = np.zeros((128, 2), np.float32)
    inp = np.zeros(128, np.float32)
    sent = 0
    while eng.playing:
        for _ in range(40):   # ~15,000 messages a second of audio
            eng.message("set", "lookahead", 20 + sent % 7)
            eng.message("set", "nonsense", 1)
            eng.message("soundcheck", 2.0)
            sent += 3
        eng.process(inp, out)
    eng.message("stop")
    from rolypoly.live.takes import load_take
    take = load_take(eng.last_take)
    assert take.settings["rows_played"] == 6 and sent > 10000


def test_a_model_tick_that_raises_or_hangs_does_not_stop_the_take(tmp_path, tiny_model):  # noqa: F811
    from rolypoly.live.drivers import ClockDriver
    from rolypoly.live.takes import load_take
    for behaviour in ("raise", "hang"):
        eng = make_engine(tmp_path / behaviour, tiny_model, offline=False)
        errors = []
        eng.connect("error", errors.append)
        eng.message("read", str(sparse_score(tmp_path)))
        calls = []

        def bad(x, behaviour=behaviour):
            calls.append(1)
            if len(calls) > 2:
                if behaviour == "raise":
                    raise RuntimeError("boom")
                time.sleep(4.0)
            return np.zeros((len(x), 19), np.float32)
        eng.runtime.predict = bad
        drv = ClockDriver(eng).start()
        try:
            assert eng.message("start")
            t0 = time.monotonic()
            while eng.playing and time.monotonic() - t0 < 10:
                time.sleep(0.02)
            t1 = time.monotonic()
            eng.message("stop")
            assert time.monotonic() - t1 < 4.0   # a hung tick never holds up stop
        finally:
            drv.close()
        take = load_take(eng.last_take)
        assert take.settings["rows_played"] == 6
        if behaviour == "raise":
            assert any("boom" in e for e in errors)


def test_a_long_loop_take_keeps_every_row(tmp_path):
    """A loop reuses its slots; the take record still holds every row played, in order."""
    from rolypoly.live.takes import load_take
    from rolypoly.score.midi import read_score
    eng = make_engine(tmp_path, extra=["engine.loop=true"])
    eng.message("read", str(sparse_score(tmp_path)))
    score = read_score(tmp_path / "s.mid")
    L = int(round(score.length_ms * 48))
    res = perform_offline(eng, np.zeros(5 * L, np.float32), tail_s=0)
    take = load_take(res.take_dir)
    k = take.rows["k"]
    assert len(k) == res.rows and res.rows >= 5 * score.n_rows   # more rows than the 2N slots
    assert np.array_equal(k, np.arange(len(k)))
    assert np.array_equal(take.rows["score_row"], k % score.n_rows)
    played = take.rows["real_vel"]
    assert np.array_equal(played[k % score.n_rows == 0], np.repeat(score.vel[:1], (k % score.n_rows == 0).sum(), 0))


def test_an_incremental_model_is_reset_once_and_stepped_row_by_row(tmp_path):
    """A runtime with ``supports_step`` gets the score at reset, then each row with the previous row as played."""
    from rolypoly.score import features as feat
    from rolypoly.score.midi import read_score

    class Stepper:
        version = "stepper"
        supports_step = True
        window = 8

        def __init__(self):
            self.resets, self.steps = [], []

        def reset(self, score_x):
            self.resets.append(np.array(score_x))
            self.steps = []

        def step(self, prev_row, row):
            self.steps.append((None if prev_row is None else np.array(prev_row), np.array(row)))
            y = np.zeros(19, np.float32)
            y[:9] = 0.7
            y[9:18] = 0.1 * (len(self.steps) % 3 - 1)   # some rows early, some late
            return y

        def predict(self, x):
            raise AssertionError("offline, an incremental model is never asked for windows")

    eng = make_engine(tmp_path)
    eng.message("read", str(sparse_score(tmp_path)))
    rt = Stepper()
    eng.runtime, eng.enable = rt, True
    res = perform_offline(eng)
    score = read_score(tmp_path / "s.mid")
    assert res.late_rows == 0 and len(rt.resets) == 1 and rt.resets[0].shape == (score.n_rows, feat.N_IN)
    assert len(rt.steps) == score.n_rows and rt.steps[0][0] is None
    rows = np.load(res.take_dir / "rows.npz")
    for k in range(1, score.n_rows):
        prev, row = rt.steps[k]
        assert np.allclose(row, rt.resets[0][k])
        assert np.allclose(prev[feat.OFF], feat.scale_off(rows["real_off"][k - 1]))   # as played
