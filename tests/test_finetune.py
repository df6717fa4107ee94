"""Train-after-take: weights, the loss terms, versions, rejection of non-finite steps, learning."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import REPO
from test_engine import make_engine, tiny_model  # noqa: F401  (fixture)

from rolypoly.errors import ModelError, RolypolyError, TakeError
from rolypoly.learn.finetune import parse_weights, train_after_take


def test_parse_weights():
    # one source of defaults: the config schema (finetune.w_r is 0 there and in configs/)
    assert parse_weights([]) == {"w_v": 1.0, "w_o": 1.0, "w_g": 1.0, "w_r": 0.0}
    from rolypoly.config import load_config
    assert parse_weights([], load_config([]).finetune) == parse_weights([])
    assert parse_weights(["0.5", 2, 0])["w_o"] == 2.0
    for bad in (["a", 1, 1], [-1, 1, 1], [1, 1], ["nan", 1, 1], [0, 0, 0, 0]):
        with pytest.raises(RolypolyError):
            parse_weights(bad)


@pytest.fixture(scope="module")
def take_dir(tmp_path_factory, tiny_model):
    from rolypoly.live.drivers import perform_offline
    from rolypoly.sim.duet import virtual_take
    from rolypoly.sim.corpus import groove_score
    d = tmp_path_factory.mktemp("ft")
    score = groove_score(12, 120.0)
    path = score.write_midi(d / "groove.mid")
    audio, rows, onsets = virtual_take(score, "laid_back", seed=2)
    eng = make_engine(d, tiny_model)
    eng.message("read", str(path))
    res = perform_offline(eng, audio)
    assert res.onsets > 0.8 * len(rows)
    return res.take_dir, d, tiny_model


def _cfg(d, model):
    from rolypoly.config import load_config
    return load_config([f"models_dir={d / 'models'}", f"engine.model_path={model}", "finetune.epochs=12", "finetune.batch_size=64"])


def test_new_version_leaves_the_base_untouched(take_dir):
    take, d, model = take_dir
    ckpt = model.with_suffix(".ckpt")
    before = hashlib.sha1(ckpt.read_bytes()).hexdigest(), hashlib.sha1(model.read_bytes()).hexdigest()
    v1 = train_after_take(_cfg(d, model), take)
    v2 = train_after_take(_cfg(d, model), take, base_model=v1.torchscript)
    assert (hashlib.sha1(ckpt.read_bytes()).hexdigest(), hashlib.sha1(model.read_bytes()).hexdigest()) == before
    assert v1.path != v2.path and v2.path.name.endswith("v002")
    for v in (v1, v2):
        for f in ("weights.ckpt", "model.pt", "losses.json", "take.txt", "version.json"):
            assert (v.path / f).is_file()
    table = json.loads((v1.path / "losses.json").read_text())
    assert len(table) == 12 and set(table[0]) >= {"loss", "r", "vel", "off", "g"}
    from rolypoly.model.export import load_runtime
    assert load_runtime(v2.torchscript).version == v2.path.name
    assert not list((d / "models" / "versions").glob(".tmp-*"))


def test_finetune_moves_drums_towards_the_musician(take_dir):
    """After training on a laid-back take, predicted offsets on the late rows move late."""
    from rolypoly.learn.finetune import take_arrays, windows
    from rolypoly.live.takes import load_take
    from rolypoly.model.export import load_runtime
    take, d, model = take_dir
    t = load_take(take)
    arr = take_arrays(t)
    xw = windows(arr["x"])
    both = (arr["onset"] & arr["hit"].any(1))[15:]
    g = arr["g"][15:][both]

    def err(path):
        rt = load_runtime(path)
        pred = np.stack([rt.predict(w)[-1] for w in xw[both]])
        hit = arr["hit"][15:][both]
        return float(np.abs(pred[:, 9:18] - g[:, None])[hit].mean())

    before = err(model)
    version = train_after_take(_cfg(d, model), take, weights={"w_v": 0.1, "w_o": 1.0, "w_g": 1.0, "w_r": 0.0})
    after = err(version.torchscript)
    assert after < 0.7 * before


def test_non_finite_loss_is_rejected_and_no_version_written(take_dir, tmp_path):
    import shutil
    take, d, model = take_dir
    bad = tmp_path / "bad_take"
    shutil.copytree(take, bad)
    with np.load(bad / "rows.npz") as z:
        rows = {k: z[k].copy() for k in z.files}
    rows["tau_g"][:] = np.nan
    rows["score_vel"] = rows["score_vel"].astype(np.float64)
    rows["score_vel"][rows["score_vel"] > 0] = np.inf
    np.savez(bad / "rows.npz", **rows)
    cfg = _cfg(tmp_path, model)
    with pytest.raises(ModelError, match="non-finite"):
        train_after_take(cfg, bad)
    assert not (tmp_path / "models" / "versions").exists() or not any((tmp_path / "models" / "versions").iterdir())


def test_bad_takes(take_dir, tmp_path):
    import shutil
    take, d, model = take_dir
    with pytest.raises(TakeError, match="no such take"):
        train_after_take(_cfg(tmp_path, model), tmp_path / "nope")
    partial = tmp_path / "partial"
    shutil.copytree(take, partial)
    (partial / "rows.npz").unlink()
    with pytest.raises(TakeError, match="rows.npz"):
        train_after_take(_cfg(tmp_path, model), partial)
    # a take with no onsets and only onset-based weights: nothing to learn
    silent = tmp_path / "silent"
    shutil.copytree(take, silent)
    with np.load(silent / "rows.npz") as z:
        rows = {k: z[k].copy() for k in z.files}
    rows["has_onset"][:] = False
    np.savez(silent / "rows.npz", **rows)
    with pytest.raises(TakeError, match="nothing to learn"):
        train_after_take(_cfg(tmp_path, model), silent, weights={"w_v": 0, "w_o": 1, "w_g": 1, "w_r": 0})


def test_train_message_loads_the_new_version(take_dir, tmp_path):
    from rolypoly.live.drivers import perform_offline
    take, d, model = take_dir
    eng = make_engine(tmp_path, model)
    statuses = []
    eng.connect("status", statuses.append)
    eng.message("read", str(REPO / "data" / "demo.mid"))
    perform_offline(eng, np.zeros(48000, np.float32))
    assert eng.message("train", 1, 1, 1, 0.1)
    eng.wait_for_training(60)
    assert any(s.startswith("finetune epoch") for s in statuses)
    assert "versions" in eng.model_path and eng.runtime.version.endswith("v001")


def test_finetuning_learns_in_the_heads_units_and_keeps_the_fitted_curve(take_dir):
    """A fitted velocity curve changes nothing in what finetuning learns (the same weights as
    with the identity curve) and is kept in the new version."""
    import torch

    from rolypoly.learn.finetune import finetune
    from rolypoly.live.takes import load_take
    from rolypoly.model.transformer import load_checkpoint
    from rolypoly.model.velocity import _set_curve, quantile_knots
    take, d, model = take_dir
    t = load_take(take)
    plain, meta = load_checkpoint(model.with_suffix(".ckpt"))
    curved, _ = load_checkpoint(model.with_suffix(".ckpt"))
    kx, ky = quantile_knots(np.linspace(40, 80, 100), np.linspace(10, 120, 100))
    _set_curve(curved, kx, ky)
    knots = curved.vel_curve.y.clone()
    w = {"w_v": 1.0, "w_o": 1.0, "w_g": 1.0, "w_r": 0.1}
    for m in (plain, curved):
        torch.manual_seed(0)
        finetune(m, meta, t, w, epochs=3, lr=3e-3, batch_size=64, seed=0, threads=1)
    for (k, a), b in zip(plain.named_parameters(), curved.parameters()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert torch.equal(curved.vel_curve.y, knots)


def test_a_model_exported_with_an_offset_scale_learns_the_offsets_it_plays(take_dir):
    """A model exported with --offset-scale a (in the head's weights and meta["offset_scale"])
    is judged on the offsets it plays: after finetuning it meets the musician as closely as
    the unscaled model does, instead of learning the musician's offsets and then playing a
    times them (a laid-back backbeat met 10 % early by the shipped 0.9)."""
    import torch

    from rolypoly.learn.finetune import finetune, take_arrays, windows
    from rolypoly.live.takes import load_take
    from rolypoly.model.transformer import load_checkpoint, scale_offsets
    from rolypoly.score import features as feat
    take, d, model = take_dir
    t = load_take(take)
    arr = take_arrays(t)
    xw = torch.from_numpy(windows(arr["x"]))
    both = (arr["hit"] & arr["onset"][:, None])[15:]
    g = np.broadcast_to(arr["g"][15:, None], both.shape)[both]
    late = g > 0.5 * g.max()          # the laid-back backbeats

    def played(m):
        with torch.no_grad():
            return m(xw)[:, -1][:, feat.OUT_OFF].numpy()[both]

    w = {"w_v": 0.0, "w_o": 1.0, "w_g": 0.0, "w_r": 0.0}
    results = {}
    per_drum = [0.5, 0.8] * 4 + [0.5]     # as a per-drum --offset-scale stores it
    for a in (1.0, 0.5, per_drum):
        m, meta = load_checkpoint(model.with_suffix(".ckpt"))
        scale_offsets(m, a)
        before = np.abs(played(m) - g).mean()
        torch.manual_seed(0)
        finetune(m, dict(meta, offset_scale=a), t, w, epochs=12, lr=3e-3, batch_size=64, seed=0, threads=1)
        off = played(m)
        results[str(a)] = (before, np.abs(off - g).mean(), float(np.mean(off[late] - g[late])))
    for a in (0.5, per_drum):
        before, after, late_bias = results[str(a)]
        assert after < 0.7 * before
        assert after <= 1.15 * results["1.0"][1] + 0.01
        assert abs(late_bias) < 0.25 * float(g[late].mean())     # not played at a fraction of the musician's lateness


def test_regulariser_reads_the_offsets_of_rows_with_an_onset_only():
    """r is over the o_hat of the take loss (drum hits on rows with an onset): a row the musician
    left alone neither changes it nor gets a gradient from it (asking those rows for the GMD
    spread flung them to the clip)."""
    import torch

    from rolypoly.learn.finetune import take_loss
    from rolypoly.score import features as feat
    n = 6
    hit = torch.zeros(n, 9, dtype=torch.bool)
    hit[:, 0] = True
    hit[::2, 2] = True
    onset = torch.tensor([True, True, False, True, False, True])
    batch = {"hit": hit, "onset": onset, "v": torch.full((n, 9), 0.5), "g": torch.linspace(-0.2, 0.1, n)}
    y = torch.zeros(n, 19)
    y[:, feat.OUT_OFF] = torch.linspace(-0.1, 0.1, n)[:, None]
    y.requires_grad_(True)
    w = {"w_v": 0.0, "w_o": 0.0, "w_g": 0.0, "w_r": 1.0}
    loss, terms = take_loss(y, batch, w, mu=-0.002, sigma=0.009)
    loss.backward()
    off_grad = y.grad[:, feat.OUT_OFF]
    assert float(off_grad[onset].abs().sum()) > 0
    assert float(off_grad[~onset].abs().sum()) == 0.0
    moved = y.detach().clone()
    moved[~onset, feat.OUT_OFF] = 0.5      # the rows without an onset at the clip
    assert float(take_loss(moved, batch, w, -0.002, 0.009)[1]["r"]) == pytest.approx(float(terms["r"].detach()))
    oh = y.detach()[:, feat.OUT_OFF][hit & onset[:, None]]
    expect = (oh.mean() - (-0.002) / feat.OFF_SCALE) ** 2 + (oh.std() - 0.009 / feat.OFF_SCALE) ** 2
    assert float(terms["r"].detach()) == pytest.approx(float(expect))


def test_warmup_makes_the_first_steps_small(take_dir):
    """Adam's first step moves every weight by about the learning rate at once (its moment
    estimates start from zero), which threw a converged model's offsets far off the take
    (offset loss x12 after one step of 20).  With ``warmup_steps`` the first step is that
    share of it, and the learning rate reaches ``lr`` at the end of the warmup."""
    import torch

    from rolypoly.learn.finetune import finetune
    from rolypoly.live.takes import load_take
    from rolypoly.model.transformer import load_checkpoint
    take, d, model = take_dir
    t = load_take(take)
    w = {"w_v": 1.0, "w_o": 1.0, "w_g": 1.0, "w_r": 0.1}

    def first_moves(**kw):
        m, meta = load_checkpoint(model.with_suffix(".ckpt"))
        before = [p.detach().clone() for p in m.parameters()]
        torch.manual_seed(0)
        finetune(m, meta, t, w, epochs=1, lr=3e-3, batch_size=0, seed=0, threads=1, **kw)
        return torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(m.parameters(), before)])

    plain, warm = first_moves(), first_moves(warmup_steps=5)
    moved = plain > 0
    assert moved.sum() > 100
    assert float(plain[moved].max()) == pytest.approx(3e-3, rel=0.05)      # about lr, whatever the gradient
    assert float(warm[moved].max()) == pytest.approx(3e-3 / 5, rel=0.05)
    assert float(warm[moved].median() / plain[moved].median()) == pytest.approx(0.2, rel=0.05)
