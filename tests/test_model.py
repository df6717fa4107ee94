"""The performance model: shapes, causality, dropout at inference, checkpoints and bad files."""
from __future__ import annotations

import pytest
import torch

from rolypoly.errors import ModelError
from rolypoly.model.transformer import (
    ModelConfig,
    RolypolyModel,
    load_checkpoint,
    save_checkpoint,
)

SMALL = ModelConfig(n_enc_layers=2, n_dec_layers=2, n_heads=4, d_model=16, d_ff=32, window=16)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return RolypolyModel(SMALL).eval()


def test_forward_shape_and_published_size():
    torch.manual_seed(0)
    m = RolypolyModel(SMALL).eval()
    assert m(torch.rand(3, 16, 22)).shape == (3, 16, 19)
    assert m(torch.rand(1, 5, 22)).shape == (1, 5, 19)
    # The published configuration is about 0.7 M parameters.
    from rolypoly.config import load_config
    n = RolypolyModel(ModelConfig.from_cfg(load_config().model)).n_params()
    assert 0.6e6 < n < 0.8e6


def test_output_is_causal(model):
    """Output t must not change when rows after t change, nor when row t's own played offsets change."""
    x = torch.rand(2, 16, 22)
    y = model(x)
    x2 = x.clone()
    x2[:, 9:] = torch.rand(2, 7, 22)          # everything after row 8
    x2[:, 8, 9:18] = torch.rand(2, 9)          # row 8's own realised offsets
    x2[:, 8, 21] = 0.3                         # row 8's own tau_g
    y2 = model(x2)
    assert torch.allclose(y[:, :9], y2[:, :9], atol=1e-6)
    assert not torch.allclose(y[:, 9:], y2[:, 9:], atol=1e-4)


def test_history_reaches_the_next_row(model):
    """The decoder sees earlier rows' offsets and tau_g (the partner must be able to steer it)."""
    x = torch.rand(1, 16, 22)
    y = model(x)
    for col in (9, 21):
        x2 = x.clone()
        x2[:, 7, col] += 0.5
        assert not torch.allclose(model(x2)[:, 8], y[:, 8], atol=1e-6)


def test_window_and_whole_sequence_agree_for_the_first_rows(model):
    x = torch.rand(1, 16, 22)
    assert torch.allclose(model(x)[:, :10], model(x[:, :10]), atol=1e-5)


def test_dropout_off_in_eval_mode():
    torch.manual_seed(0)
    m = RolypolyModel(ModelConfig(**{**SMALL.__dict__, "dropout": 0.5}))
    x = torch.rand(1, 16, 22)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    assert not torch.equal(m(x), m(x))


def test_checkpoint_roundtrip(tmp_path, model):
    save_checkpoint(model, {"version": "t1", "offset_mu": -0.004, "offset_sigma": 0.012}, tmp_path / "m.ckpt")
    loaded, meta = load_checkpoint(tmp_path / "m.ckpt")
    x = torch.rand(2, 16, 22)
    assert torch.allclose(loaded(x), model(x))
    assert not loaded.training
    assert meta["version"] == "t1" and meta["offset_mu"] == -0.004
    assert meta["model_config"]["d_model"] == 16


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_truncated_checkpoint(tmp_path, model):
    save_checkpoint(model, {"version": "t"}, tmp_path / "m.ckpt")
    data = (tmp_path / "m.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.ckpt"):
        load_checkpoint(tmp_path / "cut.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "junk.ckpt")


def test_other_architecture_checkpoint(tmp_path, model):
    # Weights of another shape under a config that claims this one.
    save_checkpoint(model, {"version": "t"}, tmp_path / "m.ckpt")
    payload = torch.load(tmp_path / "m.ckpt", weights_only=False)
    payload["meta"]["model_config"]["d_model"] = 32
    torch.save(payload, tmp_path / "other.ckpt")
    with pytest.raises(ModelError, match="do not match"):
        load_checkpoint(tmp_path / "other.ckpt")
    # A foreign state dict.
    torch.save({"model": {"w": torch.zeros(3)}, "meta": {"model_config": SMALL.__dict__}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ModelError, match="do not match"):
        load_checkpoint(tmp_path / "foreign.ckpt")
    # A plain tensor file.
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    with pytest.raises(ModelError, match="not a rolypoly checkpoint"):
        load_checkpoint(tmp_path / "tensor.ckpt")


def test_bad_model_config():
    with pytest.raises(ModelError, match="divisible"):
        ModelConfig.from_cfg({"d_model": 30, "n_heads": 4})
    with pytest.raises(ModelError, match="dropout"):
        ModelConfig.from_cfg({"dropout": 1.5})


# ----------------------------------------------------------------------------- incremental model

INC = ModelConfig(n_enc_layers=2, n_dec_layers=3, n_heads=4, d_model=16, d_ff=32, window=32, span=5, enc_ahead=3)


@pytest.fixture()
def inc_model():
    torch.set_num_threads(1)  # hundreds of tiny steps: thread hand-offs would dominate on a busy machine
    torch.manual_seed(1)
    m = RolypolyModel(INC).eval()
    with torch.no_grad():  # larger weights than the init, so that every path matters in the outputs
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    return m


def _stepped(m, x):
    mem, cache = m.encode(x), m.new_cache(x.shape[0])
    with torch.no_grad():
        return torch.stack([m.step(x[:, max(k - 1, 0)], x[:, k], k, mem, cache) for k in range(x.shape[1])], 1)


@pytest.mark.parametrize("T", [7, 40, 1030])  # shorter than a span, a few spans, past the banded gather threshold
def test_stepping_equals_the_whole_sequence(inc_model, T):
    x = torch.rand(2, T, 22)
    with torch.no_grad():
        full = inc_model(x)
    assert torch.allclose(_stepped(inc_model, x), full, atol=1e-5)


def test_incremental_decoder_history_is_banded_and_encoder_reads_ahead(inc_model):
    x = torch.rand(1, 60, 22)
    with torch.no_grad():
        y = inc_model(x)
        # The receptive field of played history: 3 layers * (5 - 1) + 1 = 13 rows.
        assert inc_model.receptive_field == 13
        far = x.clone()
        far[:, :30, 9:18] = torch.rand(1, 30, 9)       # played offsets of rows 0..29
        y_far = inc_model(far)
        # Row 30 + 13 = 43 and later no longer see rows < 30 through the decoder ...
        assert torch.allclose(y_far[:, 43:], y[:, 43:], atol=1e-6)
        # ... while row 31 does.
        assert not torch.allclose(y_far[:, 31], y[:, 31], atol=1e-4)
        # A score change ahead of row 20 (rows 21..23 are within one encoder layer's reach) changes row 20.
        ahead = x.clone()
        ahead[:, 22, 0:9] = 1.0 - ahead[:, 22, 0:9]
        assert not torch.allclose(inc_model(ahead)[:, 20], y[:, 20], atol=1e-4)
        # Played offsets of row t itself and later never reach row t.
        late = x.clone()
        late[:, 20:, 9:18] = torch.rand(1, 40, 9)
        assert torch.allclose(inc_model(late)[:, :21], y[:, :21], atol=1e-6)


def test_window_model_weights_load_into_the_incremental_layout(tmp_path, model):
    """The two layouts share parameter names and shapes: warm starting needs no conversion."""
    import dataclasses
    inc = RolypolyModel(dataclasses.replace(SMALL, span=4, enc_ahead=2))
    inc.load_state_dict(model.state_dict(), strict=True)


def test_step_on_a_window_model_is_refused(model):
    x = torch.rand(1, 3, 22)
    with pytest.raises(RuntimeError, match="no incremental decoder"):
        model.step(x[:, 0], x[:, 0], 0, model.encode(x), model.new_cache(1))


def test_incremental_config_is_validated():
    with pytest.raises(ModelError, match="enc_ahead > 0 needs model.span"):
        ModelConfig.from_cfg({"enc_ahead": 4})
    with pytest.raises(ModelError, match="must be >= 0"):
        ModelConfig.from_cfg({"span": -1})


# ----------------------------------------------------------------------------- the velocity curve

def test_velocity_curve_is_the_identity_until_fitted_and_old_weights_load(tmp_path, model):
    """A model without a fitted curve outputs its head; files saved before the curve load with it."""
    x = torch.rand(1, 9, 22)
    with torch.no_grad():
        v = torch.linspace(-0.5, 1.5, 50)
        assert torch.allclose(model.vel_curve(v), v, atol=1e-6)
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("vel_curve.")}
    torch.save({"model": old, "meta": {"model_config": __import__("dataclasses").asdict(SMALL)}}, tmp_path / "old.ckpt")
    loaded, _ = load_checkpoint(tmp_path / "old.ckpt")
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_a_fitted_curve_maps_only_velocities_and_stepping_still_equals_forward(inc_model, tmp_path):
    from rolypoly.model.velocity import _set_curve, quantile_knots
    x = torch.rand(1, 30, 22)
    with torch.no_grad():
        before = inc_model(x)
    # a curve that spreads: 40..80 predicted -> 10..120 real
    kx, ky = quantile_knots(torch.linspace(40, 80, 200).numpy(), torch.linspace(10, 120, 200).numpy(), knots=17)
    _set_curve(inc_model, kx, ky)
    with torch.no_grad():
        after = inc_model(x)
    assert torch.allclose(after[..., 9:], before[..., 9:])            # offsets and g untouched
    assert not torch.allclose(after[..., :9], before[..., :9], atol=1e-3)
    # monotone: the order of velocities is kept
    order = torch.argsort(before[0, :, 0])
    assert bool((torch.diff(after[0, order, 0]) >= -1e-6).all())
    # 60 (the middle of the predicted range) maps to the middle of the real one
    assert abs(float(inc_model.vel_curve(torch.tensor([60.0 / 127]))) * 127 - 65.0) < 1.0
    assert torch.allclose(_stepped(inc_model, x), after, atol=1e-5)
    save_checkpoint(inc_model, {"version": "t"}, tmp_path / "c.ckpt")
    loaded, _ = load_checkpoint(tmp_path / "c.ckpt")
    with torch.no_grad():
        assert torch.allclose(loaded(x), after, atol=1e-6)


class _Squeezed(torch.nn.Module):
    """Plays each hit at half its written velocity plus a quarter: squeezed towards the middle."""

    span = 0
    window = 16

    def __init__(self):
        super().__init__()
        from rolypoly.model.transformer import VelocityCurve
        self.vel_curve = VelocityCurve()

    def forward(self, x):
        return torch.cat([self.vel_curve(0.5 * x[..., :9] + 0.25), torch.zeros_like(x[..., :10])], -1)


def test_fitting_the_curve_spreads_squeezed_velocities_within_the_tolerance():
    """A squeezed model gets a curve that widens its velocity histogram on validation, within
    the MAE tolerance, and the largest such blend is the one chosen."""
    from rolypoly.model.velocity import ALPHAS, fit_velocity_curve
    from rolypoly.sim.corpus import synthetic_takes
    m = _Squeezed()
    takes = synthetic_takes(n_takes=8, rows=64, seed=5)
    rep = fit_velocity_curve(m, takes, takes, knots=9, tolerance=1e9)
    rows = {r["alpha"]: r for r in rep["validation"]}
    assert set(rows) == set(ALPHAS)
    assert rows[1.0]["hist_intersection"] > rows[0.0]["hist_intersection"] + 0.1
    base, full = rows[0.0]["velocity_mae"], rows[1.0]["velocity_mae"]
    assert full > base   # spreading costs error here: the tolerance decides
    tol = (full - base) / 2
    mid = fit_velocity_curve(_Squeezed(), takes, takes, knots=9, tolerance=tol)
    chosen = ALPHAS.index(mid["alpha"])
    assert 0 < chosen < len(ALPHAS) - 1
    assert mid["validation_mae"] <= base + tol
    assert mid["validation"][chosen + 1]["velocity_mae"] > base + tol
    assert rep["alpha"] == 1.0   # an unbounded tolerance admits every blend
    # the report is plain data: it goes into checkpoints read back with weights_only
    from rolypoly.model.transformer import read_checkpoint
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        torch.save({"model": {}, "meta": {"model_config": {}, "velocity_curve": {k: v for k, v in rep.items()
                                                                                  if k != "validation"}}}, f"{d}/c.pt")
        assert read_checkpoint(f"{d}/c.pt")["meta"]["velocity_curve"]["alpha"] == 1.0


def test_encode_part_updates_the_encoding_of_changed_rows_exactly(inc_model):
    x = torch.rand(1, 120, 22)
    with torch.no_grad():
        mem = inc_model.encode(x)
        y = x.clone()
        y[:, 60:76] = torch.rand(1, 16, 22)          # a bar drawn ahead
        stale = mem.clone()
        inc_model.encode_part(y, 60, 76, mem)
        full = inc_model.encode(y)
    assert torch.allclose(mem, full, atol=1e-6)
    assert not torch.allclose(stale, full, atol=1e-3)   # without the update the encoding is wrong
    # rows the change cannot reach keep their bits (2 encoder layers x 3 ahead, x 4 back)
    assert torch.equal(mem[..., :60 - 6, :], stale[..., :60 - 6, :])
    assert torch.equal(mem[..., 76 + 8:, :], stale[..., 76 + 8:, :])


def test_scale_offsets_scales_only_the_drum_offsets(inc_model):
    import copy

    from rolypoly.model.transformer import scale_offsets
    x = torch.rand(1, 20, 22)
    m = copy.deepcopy(inc_model)
    scale_offsets(m, 0.5)
    with torch.no_grad():
        # the decoder's own history is read from the input rows here, so the outputs scale exactly
        a, b = inc_model(x), m(x)
    assert torch.allclose(b[..., 9:18], 0.5 * a[..., 9:18], atol=1e-6)
    assert torch.allclose(b[..., :9], a[..., :9]) and torch.allclose(b[..., 18:], a[..., 18:])
    for bad in (0.0, -1.0, 2.5, float("nan"), [0.9] * 8, [0.9] * 8 + [3.0], "x"):
        with pytest.raises(ModelError, match="offset scale"):
            scale_offsets(m, bad)


def test_scale_offsets_gives_each_drum_its_own_factor(inc_model):
    import copy

    from rolypoly.model.transformer import scale_offsets
    x = torch.rand(1, 20, 22)
    m = copy.deepcopy(inc_model)
    per_drum = torch.linspace(0.5, 1.3, 9)
    scale_offsets(m, per_drum.tolist())
    with torch.no_grad():
        a, b = inc_model(x), m(x)
    assert torch.allclose(b[..., 9:18], per_drum * a[..., 9:18], atol=1e-6)
    assert torch.allclose(b[..., :9], a[..., :9]) and torch.allclose(b[..., 18:], a[..., 18:])
