"""Shared fixtures: where the shared data lives, a composed config, MIDI file builders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The one place tests look for the shared data (GMD, presets, reference renders, real onsets).
SHARED_DATA = Path(os.environ.get("ROLYPOLY_SHARED_DATA", REPO.parent / "shared" / "data"))
GMD_ROOT = SHARED_DATA / "groove"


def shared(*parts: str) -> Path:
    """A path under the shared data folder, skipping the test when it is absent."""
    return need(SHARED_DATA.joinpath(*parts))


def need(path: Path) -> Path:
    """``path``, skipping the test when it is absent (the one shared-data skip)."""
    path = Path(path)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data("presets", "x.mtpreset")``: a shared-data path, or the test is skipped."""
    return shared


@pytest.fixture(scope="session")
def gmd_cfg():
    """Config pointing at ../shared/data/groove with the repo's cache folder."""
    shared("groove", "info.csv")
    from rolypoly.config import load_config
    return load_config([f"data.root={GMD_ROOT}", f"cache_dir={REPO / 'cache'}"])


@pytest.fixture(scope="session")
def gmd16(gmd_cfg):
    from rolypoly.score.gmd import load_gmd
    return load_gmd(gmd_cfg, grid="16", show_progress=False)


def write_midi(path, tracks, ppq=480, midi_type=1):
    """Write a MIDI file from tracks given as lists of (abs_tick, mido message)."""
    import mido
    mid = mido.MidiFile(type=midi_type, ticks_per_beat=ppq)
    for events in tracks:
        tr = mido.MidiTrack()
        last = 0
        for tick, msg in sorted(events, key=lambda e: (e[0], 0 if e[1].type == "note_off" else 1)):
            tr.append(msg.copy(time=tick - last))
            last = tick
        mid.tracks.append(tr)
    mid.save(str(path))
    return path


def note(tick, pitch, vel=100, channel=9, dur=30):
    import mido
    return [(tick, mido.Message("note_on", note=pitch, velocity=vel, channel=channel)),
            (tick + dur, mido.Message("note_off", note=pitch, velocity=0, channel=channel))]


def tempo(tick, bpm):
    import mido
    return (tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))


def meter(tick, num, den):
    import mido
    return (tick, mido.MetaMessage("time_signature", numerator=num, denominator=den))


@pytest.fixture(scope="session")
def jack_session():
    """One JACK dummy server (48 kHz, 128 frames) for the whole test run, as ``JACK_DEFAULT_SERVER``.

    A process that has talked to one JACK server cannot talk to a second one started
    after it (libjack keeps the first one's shared memory), so every in-process JACK
    test shares this one.
    """
    import shutil
    if not shutil.which("jackd"):
        pytest.skip("jackd (Debian jackd2) is not installed")
    from rolypoly.live.jack import start_jack
    name = f"rolypoly-tests-{os.getpid()}"
    proc = start_jack(name=name, period=128)
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    yield proc
    import sys
    sd = sys.modules.get("sounddevice")
    while sd is not None and getattr(sd, "_initialized", 0) > 0:
        sd._terminate()   # PortAudio's JACK layer must let go before the server goes away
    if proc is not None:
        proc.terminate()
        proc.wait(5)
    if old is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = old
