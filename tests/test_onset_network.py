"""The onset network: front end, incremental runtime, picking, export, and the listener option."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rolypoly.ears import network as N  # noqa: E402
from rolypoly.ears.listener import Listener, detect_onsets  # noqa: E402
from rolypoly.metrics import onset_f_measure  # noqa: E402

SR = 48000


def _plucks(times, sr=SR, level=0.3, seed=0):
    """Decaying harmonic tones starting exactly at ``times`` (s)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int((max(times) + 1.0) * sr))
    for k, t in enumerate(times):
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        n = int(0.4 * sr)
        tt = np.arange(n) / sr
        tone = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 6)) * np.exp(-tt / 0.12)
        tone *= np.minimum(1.0, (n - np.arange(n)) / (0.1 * sr))   # faded out: no click at the end
        a = int(t * sr)
        x[a:a + n] += level * tone[: x.size - a]
    return x.astype(np.float32)


def _random_model(seed=0):
    torch.manual_seed(seed)
    model = N.build_model().eval()
    return model, {k: v.detach().numpy() for k, v in model.state_dict().items()}


def test_front_end_any_split_equals_whole():
    x = _plucks([0.1, 0.4, 0.75])
    whole, lw = N.FrontEnd(SR).process(x)
    fe = N.FrontEnd(SR)
    parts = [fe.process(x[i:i + 333]) for i in range(0, x.size, 333)]
    split = np.concatenate([p[0] for p in parts])
    assert split.shape == whole.shape == (x.size // 128, N.N_FEATURES)
    np.testing.assert_allclose(split, whole, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), lw, atol=1e-4)


def test_front_end_is_level_normalised_but_keeps_the_level():
    x = _plucks([0.2, 0.6])
    loud, l_loud = N.FrontEnd(SR).process(x)
    quiet, l_quiet = N.FrontEnd(SR).process(x * 10 ** (-20 / 20))
    # the band features hardly move with a 20 dB change; the level feature does
    on = l_loud > -40
    assert np.median(np.abs(loud[on, :N.N_MELS] - quiet[on, :N.N_MELS])) < 0.05
    assert np.median(l_loud[on] - l_quiet[on]) == pytest.approx(20.0, abs=0.5)


def test_targets_mark_frames_after_each_onset_only():
    y = N.targets(400, 128, SR, [0.1, 0.5])
    ends = (np.arange(400) + 1) * 128 / SR
    on = ends[y > 0]
    assert on.size == 2 * round(N.LOOKAHEAD_S * SR / 128)
    assert np.all(((on >= 0.1) & (on < 0.1 + N.LOOKAHEAD_S)) | ((on >= 0.5) & (on < 0.5 + N.LOOKAHEAD_S)))


def test_incremental_runtime_equals_full_sequence_forward():
    model, weights = _random_model(1)
    feats = np.random.default_rng(2).standard_normal((400, N.N_FEATURES)).astype(np.float32)
    with torch.no_grad():
        full = model(torch.from_numpy(feats[None]))[0].numpy()
    rt = N.Runtime(weights)
    stepped = np.concatenate([rt.run(feats[:123]), rt.run(feats[123:])])
    np.testing.assert_allclose(stepped, full, atol=1e-4)
    ref = N.Runtime(weights)
    np.testing.assert_allclose([ref.step_numpy(f) for f in feats], full, atol=1e-4)
    # causal: changing the future does not change the past
    later = feats.copy()
    later[300:] += 5.0
    with torch.no_grad():
        moved = model(torch.from_numpy(later[None]))[0].numpy()
    np.testing.assert_allclose(moved[:300], full[:300], atol=1e-5)
    assert not np.allclose(moved[300:], full[300:])


def test_picker_fires_once_per_rise_and_respects_the_floor():
    p = N.Picker(0.5, 0.25, min_ioi_frames=3, floor_db=-70.0)
    prob = np.array([0.1, 0.7, 0.8, 0.6, 0.1, 0.9, 0.2, 0.2, 0.9])
    level = np.array([-20.0] * 8 + [-90.0])   # the last rise is under the floor
    assert p.process(prob, level).tolist() == [1, 5]


def test_export_loads_with_torch_jit_alone(tmp_path):
    model, _ = _random_model(3)
    path = N.export(model, tmp_path / "onsets.pt", {"threshold": 0.4, "latency_s": 0.006})
    extra = {"meta.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    x = torch.zeros(1, 50, N.N_FEATURES)
    assert loaded(x).shape == (1, 50)
    assert json.loads(extra["meta.json"])["threshold"] == 0.4
    weights, meta = N.load(path)
    assert meta["latency_s"] == 0.006
    det = N.NetworkDetector(SR, model=(weights, meta))
    assert det.latency_s == 0.006 and det.picker.threshold == 0.4


def test_load_names_a_file_that_is_not_a_model(tmp_path):
    from rolypoly.errors import ModelError
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="x.pt"):
        N.load(bad)
    with pytest.raises(ModelError, match="train-onsets"):
        N.load(tmp_path / "missing.pt")


# -- the shipped model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    if not N.MODEL_FILE.is_file():
        pytest.skip("models/onsets.pt not built (rolypoly data train-onsets)")
    return N.load()


def test_shipped_model_loads_with_torch_jit_alone(shipped):
    extra = {"meta.json": ""}
    mod = torch.jit.load(str(N.MODEL_FILE), _extra_files=extra)
    assert mod(torch.zeros(1, 10, N.N_FEATURES)).shape == (1, 10)
    meta = json.loads(extra["meta.json"])
    assert 0.0 < meta["threshold"] < 1.0 and 0.0 <= meta["latency_s"] <= N.LOOKAHEAD_S + 0.005


def test_network_listener_finds_clean_plucks_at_their_times(shipped):
    times = np.round(np.arange(0.3, 8.0, 0.37) + 0.05 * np.sin(np.arange(21)), 4)
    x = _plucks(times)
    lis = Listener(SR, 128, method="network")
    found = detect_onsets(x, SR, 128, block=128, listener=lis)
    r = onset_f_measure(found, times, 0.025)
    assert r["recall"] >= 0.9 and r["precision"] >= 0.9, r
    assert np.median(np.abs(r["delays"])) < 0.012


def test_network_listener_any_block_split_gives_the_same_onsets(shipped):
    x = _plucks([0.2, 0.55, 0.9, 1.3, 1.6])
    a = detect_onsets(x, SR, 128, block=128, method="network")
    b = detect_onsets(x, SR, 128, block=4096, method="network")
    c = detect_onsets(x, SR, 128, block=1000, method="network")
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, c)


@pytest.mark.parametrize("kind", ["silence", "dc", "noise", "nan", "inf", "clipped_noise", "huge"])
def test_network_listener_bad_input_no_crash_no_storm(shipped, kind):
    rng = np.random.default_rng(4)
    n = 10 * SR
    x = {"silence": np.zeros(n), "dc": np.full(n, 0.4), "noise": rng.standard_normal(n) * 0.1,
         "nan": np.full(n, np.nan), "inf": np.where(rng.random(n) < 0.01, np.inf, 0.0),
         "clipped_noise": np.clip(rng.standard_normal(n), -1, 1), "huge": np.full(n, 1e30)}[kind]
    x = np.stack([x, x], axis=1).astype(np.float32)           # two channels
    heard = []
    lis = Listener(SR, 128, method="network", on_warning=heard.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # every warning goes to on_warning
        found = detect_onsets(x, SR, 128, block=128, listener=lis)
    # a steady input has at most its start (silence -> sound) as an onset
    assert len(found) <= 1, (kind, found)
    if kind in ("nan", "inf"):
        assert any("NaN/inf" in m for m in heard)
    if kind == "silence":
        assert any("no input" in m for m in heard)


def test_network_settings_are_checked():
    from rolypoly.errors import ConfigError
    with pytest.raises(ConfigError, match="net_threshold"):
        Listener(SR, 128, method="network", net_threshold=1.5)


@pytest.mark.parametrize("sr", [44100, 96000])
def test_network_listener_other_sample_rates(shipped, sr):
    # the frame period stays 2.7 ms and the window scales: the plucks are still found
    times = np.round(np.arange(0.3, 4.0, 0.37), 4)
    found = detect_onsets(_plucks(times, sr=sr), sr, 128, block=256, method="network")
    r = onset_f_measure(found, times, 0.025)
    assert r["f"] >= 0.9, r
