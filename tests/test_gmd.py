"""GMD pipeline: quantisation, encoder velocities, splits, cache, bad roots."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import GMD_ROOT, meter, note, shared, tempo, write_midi

from rolypoly.errors import DataError
from rolypoly.score.gmd import prepare, quantise_take, read_info

PPQ = 480


def test_quantise_to_nearer_of_16th_and_triplet(tmp_path):
    bar = 4 * PPQ  # 120 bpm 4/4: a bar is 2000 ms
    ticks = [0, bar // 16 + 10, bar // 3 + 5, bar // 2 - 7]  # on grid, late 16th, late triplet, early 8th
    ev = [tempo(0, 120), meter(0, 4, 4)]
    for i, t in enumerate(ticks):
        ev += note(t, 38, vel=40 + 20 * i)
    ev += note(bar // 2 - 3, 38, vel=10)  # same drum, same grid cell, softer: dropped
    rows = quantise_take(write_midi(tmp_path / "q.mid", [ev]), "16+24")
    np.testing.assert_allclose(rows["phase"], [0, 1 / 16, 1 / 3, 1 / 2], atol=1e-6)
    np.testing.assert_allclose(rows["off"][:, 1], [0, 10 / bar, 5 / bar, -7 / bar], atol=1e-6)
    np.testing.assert_allclose(rows["vel"][:, 1], [40, 60, 80, 100])
    # encoder velocity = per-take mean of the non-zero snare velocities, on every snare row
    np.testing.assert_allclose(rows["score_vel"][:, 1], 70.0)
    assert np.all(rows["score_vel"][:, 0] == 0)
    only16 = quantise_take(write_midi(tmp_path / "q.mid", [ev]), "16")
    assert np.all(np.isclose(only16["phase"] * 16, np.round(only16["phase"] * 16)))


def test_onset_before_barline_snaps_to_next_bar(tmp_path):
    ev = [tempo(0, 120)] + note(4 * PPQ - 5, 36) + note(2 * PPQ, 38)
    rows = quantise_take(write_midi(tmp_path / "b.mid", [ev]), "16+24")
    np.testing.assert_array_equal(rows["bar"], [0, 1])
    assert rows["off"][1, 0] < 0 and rows["phase"][1] == 0


def test_bad_roots(tmp_path):
    with pytest.raises(DataError, match="info.csv"):
        read_info(tmp_path)
    (tmp_path / "info.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="missing columns"):
        read_info(tmp_path)


def test_cache_is_reused_and_invalidated(tmp_path):
    src = shared("groove", "info.csv")
    lines = src.read_text().splitlines()
    root = tmp_path / "g"
    picked = [l for l in lines[1:] if float(l.split(",")[9]) > 5][:4]
    for line in picked:
        rel = line.split(",")[7]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((GMD_ROOT / rel).read_bytes())
    (root / "info.csv").write_text("\n".join([lines[0]] + picked) + "\n")
    cache = tmp_path / "cache"
    t1, f1, built1 = prepare(root, cache, show_progress=False)
    t2, f2, built2 = prepare(root, cache, show_progress=False)
    assert built1 and not built2 and f1 == f2 and len(t1) == len(t2) == 4
    np.testing.assert_array_equal(t1.arrays["off"], t2.arrays["off"])
    # Changing one data file changes the key and rebuilds
    rel = picked[0].split(",")[7]
    data = bytearray((root / rel).read_bytes())
    data[-5] = (data[-5] + 1) % 128
    (root / rel).write_bytes(bytes(data))
    _, f3, built3 = prepare(root, cache, show_progress=False)
    assert built3 and f3 != f1 and not f1.exists()


def test_full_dataset_splits_and_stats(gmd16):
    sizes = {s: len(gmd16.split(s)) for s in ("train", "validation", "test")}
    assert sizes["train"] > sizes["test"] > 0 and sizes["validation"] > 0
    assert np.all(gmd16.meta["duration"] >= 5.0)
    hit = gmd16.arrays["vel"] > 0
    assert np.all(np.abs(gmd16.arrays["off"][hit]) <= 1 / 32 + 1e-6)  # within half a 16th
    mu, sigma = gmd16.split("train").offset_stats()
    assert -0.01 < mu < 0.0 and 0.0 < sigma < 0.02
