"""Groove plots: a PNG per take (or takes stacked), drawn from the take's own hits and onsets."""
from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    from rolypoly.bench.reliability import make_take, short_score
    from rolypoly.config import load_config
    work = tmp_path_factory.mktemp("plot")
    return make_take(load_config([]), work, short_score(work, bars=2))


def test_plot_data_comes_from_the_take(take):
    from rolypoly.plots import _take_data
    d = _take_data(take)
    hits = json.loads((take / "hits.json").read_text())
    assert len(d["hit_s"]) == len(hits) > 0
    assert np.allclose(d["hit_off"], [h["offset_ms"] for h in hits])
    assert len(d["onset_s"]) == len(json.loads((take / "onsets.json").read_text()))
    assert d["bar_s"][0] == 0.0 and np.all(np.diff(d["row_s"]) > 0)


def test_plot_command_writes_a_png_and_never_replaces_one(take, tmp_path, capsys):
    import matplotlib.image as mpimg

    from rolypoly.cli import main
    out = tmp_path / "g.png"
    assert main(["plot", str(take), str(take), "--labels", "before,after", "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == str(out)
    img = mpimg.imread(str(out))
    assert img.ndim == 3 and img.shape[0] > img.shape[1] * 0.5   # two takes stacked: a tall image
    before = out.read_bytes()
    assert main(["plot", str(take), "-o", str(out)]) == 2
    assert out.read_bytes() == before
    assert main(["plot", str(take), "--labels", "a,b", "-o", str(tmp_path / "h.png")]) == 2


def test_loss_plot(tmp_path):
    from rolypoly.plots import plot_losses
    rows = [{"epoch": e, "loss": 1.0 / e, "r": 0.1, "vel": 0.5 / e, "off": 0.3 / e, "g": 0.2} for e in range(1, 6)]
    out = plot_losses(rows, tmp_path / "loss.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
