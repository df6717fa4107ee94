"""Pretraining: batches, partner, schedule, resume, best checkpoint, DDP under torchrun, evaluation."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rolypoly.config import load_config
from rolypoly.score.features import OFF_SCALE

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.n_enc_layers=1", "model.n_dec_layers=1", "model.n_heads=2", "model.d_model=16", "model.d_ff=32"]


def _cfg(tmp_path, *extra):
    return load_config(["train.data=synthetic", f"train.out_dir={tmp_path / 'run'}", "train.batch_size=8",
                        "train.eval_batches=2", "train.log_every=1", "train.warmup_steps=2", "train.threads=1",
                        *TINY, *extra])


def test_rows_and_partner_batches():
    from rolypoly.model.pretrain import make_batch, rows_from_takes
    from rolypoly.sim.corpus import synthetic_takes
    takes = synthetic_takes(n_takes=4, rows=40)
    data = rows_from_takes(takes, 16)
    assert len(data) == 4 * (40 - 16 + 1)
    # g is the mean offset of the row's hits, in model units.
    a = takes.arrays
    hit = a["vel"][5] > 0
    assert data.g[5] == pytest.approx(a["off"][5][hit].mean() / OFF_SCALE, abs=1e-6)
    rng = np.random.default_rng(0)
    starts = rng.choice(data.win_starts, 200)
    x, vel, off, g, hit = make_batch(data, starts, 16)
    assert x.shape == (200, 16, 22) and np.all(x[:, :, 21] == 0)
    x, *_ = make_batch(data, starts, 16, rng, partner_share=0.5, partner_row_prob=1.0, partner_noise_ms=0.0)
    with_partner = np.any(x[:, :, 21] != 0, axis=1)
    assert 0.3 < with_partner.mean() < 0.7
    # Without noise the partner is exactly the row's mean offset.
    np.testing.assert_allclose(x[with_partner, :, 21], g[with_partner], atol=1e-6)


def test_learning_rate_schedule():
    from rolypoly.model.pretrain import lr_at
    tc = load_config(["train.lr=0.01", "train.warmup_steps=10", "train.max_steps=110", "train.min_lr_ratio=0.1"]).train
    assert lr_at(0, tc) == pytest.approx(0.001)
    assert lr_at(9, tc) == pytest.approx(0.01)
    assert lr_at(60, tc) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert lr_at(110, tc) == pytest.approx(0.001)
    assert all(lr_at(s, tc) >= lr_at(s + 1, tc) for s in range(10, 110))


def test_pretrain_writes_resumes_and_keeps_best(tmp_path):
    from rolypoly.model.pretrain import pretrain
    from rolypoly.model.transformer import load_checkpoint
    cfg = _cfg(tmp_path, "train.max_steps=4", "train.eval_every=2", "train.checkpoint_every=2")
    res = pretrain(cfg, log=lambda m: None)
    run = tmp_path / "run"
    assert res.resumed_from == 0 and res.best_step in (2, 4)
    for name in ("last.pt", "best.pt", "loss.png", "history.json"):
        assert (run / name).is_file(), name
    model, meta = load_checkpoint(run / "best.pt")
    assert meta["model_config"]["d_model"] == 16 and "offset_sigma" in meta and meta["seed"] == cfg.seed
    # Asking for more steps resumes where the last run stopped.
    logs = []
    res2 = pretrain(_cfg(tmp_path, "train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2"),
                    log=logs.append)
    assert res2.resumed_from == 4 and any("resuming" in m for m in logs)
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 6


def test_resume_with_another_architecture_is_refused(tmp_path):
    from rolypoly.errors import ModelError
    from rolypoly.model.pretrain import pretrain
    pretrain(_cfg(tmp_path, "train.max_steps=1", "train.eval_every=1", "train.checkpoint_every=1"), log=lambda m: None)
    with pytest.raises(ModelError, match="out_dir"):
        pretrain(_cfg(tmp_path, "train.max_steps=2", "model.d_model=32"), log=lambda m: None)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """torchrun with 2 processes (gloo) trains a few steps and rank 0 writes the checkpoint."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rolypoly", "pretrain", "train.data=synthetic", f"train.out_dir={out}", "train.max_steps=3",
           "train.batch_size=4", "train.eval_every=3", "train.eval_batches=1", "train.threads=1",
           "train.device=cpu", *TINY]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 3 and state["meta"]["world_size"] == 2
    assert (out / "best.pt").is_file()


def test_evaluation_conditions_use_the_right_history():
    """A predictor that copies the previous row's history shows which history each condition feeds."""
    from rolypoly.model.evaluate import evaluate
    from rolypoly.sim.corpus import synthetic_takes
    takes = synthetic_takes(n_takes=4, rows=40)
    seen = {}

    def copy_prev(x):
        # Predict row t's offsets as row t-1's decoder offsets, g as row t-1's tau_g.
        y = np.zeros(x.shape[:2] + (19,), np.float32)
        y[:, 1:, 9:18] = x[:, :-1, 9:18]
        y[:, 1:, 18] = x[:, :-1, 21]
        y[:, :, 0:9] = x[:, :, 0:9]
        seen.setdefault("max_tau", []).append(float(np.abs(x[:, :, 21]).max()))
        return y

    res = evaluate(copy_prev, takes, block=16)
    tf, fr, pf = (res[c]["timing_ms"] for c in ("teacher-forced", "free-running", "partner-following"))
    # Free-running with a copy-predictor only ever sees zeros: it equals the zero-offset error.
    from rolypoly.metrics import timing_mae_ms
    a = takes.arrays
    zero = timing_mae_ms(np.zeros_like(a["off"]), a["off"], a["bar_ms"], a["vel"] > 0)
    assert fr == pytest.approx(zero, rel=1e-6)
    assert tf != pytest.approx(zero, rel=1e-3)
    assert max(seen["max_tau"]) > 0       # the partner condition filled tau_g
    assert res["teacher-forced"]["velocity"] == res["free-running"]["velocity"]
    assert len(res["partner-following"]["per_drum"]) == 9 and np.isfinite(pf)


def test_accented_scores_carry_the_take_s_accents():
    from rolypoly.model.pretrain import accented_scores, make_batch, rows_from_takes
    from rolypoly.sim.corpus import synthetic_takes
    # Two takes: an accent on the bar line in the first, none in the second.
    vel = np.array([[120, 0], [60, 80], [100, 0], [80, 80], [50, 0], [50, 0]], float)
    phase = np.array([0, .5, 0, .5, 0, .5])
    acc = accented_scores(vel, phase, [0, 4, 6])
    np.testing.assert_allclose(acc[:4, 0], [110, 70, 110, 70])
    np.testing.assert_allclose(acc[4:, 0], [50, 50])
    np.testing.assert_allclose(acc[:, 1], [0, 80, 0, 80, 0, 0])      # silent stays silent
    takes = synthetic_takes(n_takes=3, rows=40)
    data = rows_from_takes(takes, 16)
    starts = data.win_starts[:100]
    rng = np.random.default_rng(0)
    x, *_ = make_batch(data, starts, 16, rng, accent_share=0.5)
    idx = starts[:, None] + np.arange(16)
    accented = np.all(np.isclose(x[:, :, 0:9], data.acc_vel[idx]), axis=(1, 2))
    plain = np.all(np.isclose(x[:, :, 0:9], data.x[idx, 0:9]), axis=(1, 2))
    assert 0.25 < accented.mean() < 0.75 and np.all(accented | plain)
    assert np.all((x[:, :, 0:9] > 0) == (data.x[idx, 0:9] > 0))     # the same drums in the score


def test_incremental_model_trains_warm_started_from_a_window_model(tmp_path):
    from rolypoly.errors import ModelError
    from rolypoly.model.pretrain import pretrain
    from rolypoly.model.transformer import load_checkpoint
    pretrain(_cfg(tmp_path, "train.max_steps=1", "train.eval_every=1", "train.checkpoint_every=1"), log=lambda m: None)
    src = tmp_path / "run" / "best.pt"
    logs = []
    cfg = load_config(["train.data=synthetic", f"train.out_dir={tmp_path / 'inc'}", "train.batch_size=4",
                       "train.eval_batches=1", "train.threads=1", "train.max_steps=2", "train.eval_every=2",
                       "model=rolypoly_inc", "model.window=24", "model.span=4", "model.enc_ahead=3",
                       f"train.init_from={src}",
                       "train.accent_share=0.5", *TINY])
    pretrain(cfg, log=logs.append)
    assert any("starting from the weights" in m for m in logs)
    model, meta = load_checkpoint(tmp_path / "inc" / "best.pt")
    assert model.span == 4 and meta["init_from"] == str(src)
    bad = load_config(["train.data=synthetic", f"train.out_dir={tmp_path / 'bad'}", "train.threads=1",
                       "train.max_steps=1", f"train.init_from={src}", "model=rolypoly_inc", *TINY[:-1],
                       "model.d_ff=64"])
    with pytest.raises(ModelError, match="init_from"):
        pretrain(bad, log=lambda m: None)


def _random_banded_model(seed: int):
    """A tiny banded model with large random weights (so history visibly moves its outputs)."""
    from rolypoly.model.transformer import ModelConfig, RolypolyModel
    torch.manual_seed(seed)
    m = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=2, n_heads=2, d_model=16, d_ff=32, window=16,
                                  span=4, enc_ahead=2)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    return m


def test_incremental_evaluation_steps_like_the_engine():
    """Free-running stepping feeds the model's own offsets back; teacher-forced is the whole-take forward."""
    from rolypoly.model.evaluate import evaluate, stepped, whole_takes
    from rolypoly.sim.corpus import synthetic_takes
    torch.set_num_threads(1)
    m = _random_banded_model(0)
    takes = synthetic_takes(n_takes=3, rows=30)
    rows = [takes.rows(i) for i in range(len(takes))]
    from rolypoly.model.evaluate import _take_inputs
    prepared = [_take_inputs(r) for r in rows]
    xs, hits = [p[0] for p in prepared], [p[1] for p in prepared]
    xs[1] = xs[1][:17]; hits[1] = hits[1][:17]          # takes of different lengths step together
    free = stepped(m, xs, hits)
    # The same by hand, one take at a time: own offsets (clipped, on the score's drums) as history.
    for x, h, out in zip(xs, hits, free):
        x = x.copy()
        x[:, 9:18] = 0.0
        x[:, 21] = 0.0
        for t in range(len(x)):
            with torch.no_grad():
                y = m(torch.from_numpy(x[None]))[0, t].numpy()
            np.testing.assert_allclose(out[t], y, atol=1e-5)
            x[t, 9:18] = np.clip(y[9:18], -0.5, 0.5) * h[t]
    tf = whole_takes(m, xs)
    with torch.no_grad():
        np.testing.assert_allclose(tf[0], m(torch.from_numpy(xs[0][None]))[0].numpy(), atol=1e-6)
    res = evaluate(None, takes, stepper=m)
    assert 0.0 <= res["free-running"]["velocity_hist_intersection"] <= 1.0
    assert res["teacher-forced"]["timing_ms"] != res["free-running"]["timing_ms"]
    assert "mean_velocity" in res["partner-following"]["per_drum"][0]


def test_finetune_an_incremental_model_on_the_whole_take():
    """Train-after-take on an incremental model: the encoder stays frozen, the decoder learns the take."""
    from types import SimpleNamespace

    from rolypoly.learn.finetune import finetune
    from rolypoly.model.transformer import ModelConfig, RolypolyModel
    torch.manual_seed(0)
    m = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=2, n_heads=2, d_model=16, d_ff=32, window=16,
                                  span=4, enc_ahead=2))
    n = 80
    rng = np.random.default_rng(0)
    score_vel = np.where(rng.random((n, 9)) < 0.3, 90.0, 0.0)
    rows = {"k": np.arange(n), "has_onset": np.ones(n, bool), "tau_g": np.full(n, 0.01),
            "score_vel": score_vel, "real_off": np.zeros((n, 9)), "bpm": np.full(n, 120.0),
            "tsig": np.ones(n), "phase": (np.arange(n) % 8) / 8.0}
    take = SimpleNamespace(rows=rows, path="synthetic")
    enc_before = m.encoder[0].ff.fc.weight.detach().clone()
    dec_before = m.decoder[0].ff.fc.weight.detach().clone()
    weights = {"w_v": 1.0, "w_o": 1.0, "w_g": 1.0, "w_r": 0.0}
    table, rejected = finetune(m, {}, take, weights, epochs=8, lr=3e-3, threads=1)
    assert rejected == 0 and len(table) == 8
    assert table[-1]["loss"] < table[0]["loss"]
    assert torch.equal(m.encoder[0].ff.fc.weight, enc_before)
    assert not torch.equal(m.decoder[0].ff.fc.weight, dec_before)
    assert all(p.requires_grad for p in m.parameters())     # freezing is undone afterwards


def test_self_history_passes_approach_playing_alone():
    """After p passes from zeros, the first p rows of the "own" history are what playing alone gives."""
    from rolypoly.model.pretrain import corrupt_history
    from rolypoly.score import features as feat
    m = _random_banded_model(1)
    g = np.random.default_rng(0)
    x = torch.from_numpy(g.random((2, 12, feat.N_IN)).astype(np.float32))
    x[:, :, feat.VEL] *= torch.from_numpy((g.random((2, 12, 9)) < 0.5).astype(np.float32))
    hit = (x[:, :, feat.VEL] > 0).float()
    alone = x.clone()
    alone[:, :, feat.OFF] = 0.0
    with torch.no_grad():
        for t in range(12):   # playing alone: each row's own offsets become the next rows' history
            alone[:, t, feat.OFF] = m(alone)[:, t, feat.OUT_OFF].clamp(-0.5, 0.5) * hit[:, t]
    out = {p: corrupt_history(m, x.clone(), np.random.default_rng(0), 1.0, 0.0, passes=p, from_real=0.0)
           for p in (1, 3)}
    assert torch.allclose(out[3][:, :3, feat.OFF], alone[:, :3, feat.OFF], atol=1e-6)
    assert not torch.allclose(out[1][:, 1:3, feat.OFF], alone[:, 1:3, feat.OFF], atol=1e-4)
    # the rest of the row is untouched, and real history never reaches windows that start from zeros
    assert torch.equal(out[3][:, :, feat.VEL], x[:, :, feat.VEL])
    other = x.clone()
    other[:, :, feat.OFF] = -x[:, :, feat.OFF]
    assert torch.equal(out[3], corrupt_history(m, other, np.random.default_rng(0), 1.0, 0.0, passes=3,
                                               from_real=0.0))
