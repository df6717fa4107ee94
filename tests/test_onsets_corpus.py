"""The onsets corpus: FluidSynth and Hydrogen renders with exact onsets (skips without the packages)."""
import json

import numpy as np
import pytest

from rolypoly.ears import corpus

SR = corpus.SR


def test_first_audible_finds_the_start_of_a_ramp():
    x = np.zeros(SR)
    x[4800:4800 + 480] = np.linspace(0, 0.5, 480)
    x[5280:] = 0.5
    d = corpus.first_audible(x, 0, SR)
    assert 4800 <= d <= 4800 + 30   # -30 dB of the peak is 3 % of the way up the 10 ms ramp
    assert corpus.first_audible(np.zeros(1000), 0, 1000) is None


def test_merge_keeps_the_earliest_of_a_cluster():
    assert corpus.merge_onsets([0.5, 0.51, 0.525, 0.6, 0.2]).tolist() == [0.2, 0.5, 0.6]


def test_plan_covers_the_families_the_team_checks():
    jobs = corpus.plan(1.0)
    presets = {j.preset for j in jobs}
    assert {"acoustic grand piano", "electric piano 1", "acoustic bass", "finger bass", "picked bass",
            "slap bass", "fretless bass"} <= presets
    assert sum(j.family == "drums" for j in jobs) >= 6
    assert len({(j.family, j.name) for j in jobs}) == len(jobs)
    with pytest.raises(corpus.CorpusError):
        corpus.plan(1.0, ["theremin"])


needs_packages = pytest.mark.skipif(bool(corpus.available()), reason="fluidsynth / fluid-soundfont-gm / "
                                                                     "hydrogen-drumkits not installed")


@needs_packages
@pytest.mark.slow
@pytest.mark.parametrize("family", ["piano", "drums"])
def test_chunk_onsets_are_where_the_notes_begin(tmp_path, monkeypatch, family):
    monkeypatch.setattr(corpus, "CHUNK_S", 5.0)
    job = next(j for j in corpus.plan(1.0, [family]) if j.condition == 0)   # dry, -12 dBFS
    meta = corpus.build_chunk(job, tmp_path)
    info = json.loads(meta.read_text())
    items = corpus.load(tmp_path)
    assert len(items) == 1 and info["n_onsets"] == items[0].truth.size >= 5
    x, truth = items[0].audio.astype(np.float64), items[0].truth
    assert np.all(np.diff(truth) >= corpus.MERGE_S) and truth[-1] < x.size / SR
    # at each onset the sound grows (the 5 ms after it louder than the 5 ms before), much
    # more than between onsets (halfway to the next one), where it decays
    w = int(0.005 * SR)

    def rise(t):
        i = int(round(t * SR))
        before = np.sqrt(np.mean(x[max(0, i - w):i] ** 2)) + 1e-9
        return (np.sqrt(np.mean(x[i + w:i + 2 * w] ** 2)) + 1e-9) / before
    at = np.median([rise(t) for t in truth])
    between = np.median([rise(0.5 * (a + b)) for a, b in zip(truth[:-1], truth[1:])])
    assert at > 1.3 and at > 1.25 * between
    # resumable: a finished chunk is kept as it is
    mtime = meta.stat().st_mtime_ns
    corpus.build_chunk(job, tmp_path)
    assert meta.stat().st_mtime_ns == mtime
