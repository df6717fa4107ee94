"""TorchScript export: the contract, loading without rolypoly, the swing model, bad modules."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from rolypoly.errors import ModelError
from rolypoly.model.export import (
    export_torchscript,
    load_runtime,
    swing_module,
    write_swing,
)
from rolypoly.model.transformer import ModelConfig, RolypolyModel
from rolypoly.score.features import LAYOUT, OFF_SCALE


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=16, d_ff=32)).eval()
    path = tmp_path_factory.mktemp("exp") / "m.pt"
    export_torchscript(model, {"version": "test-1", "offset_mu": -0.005, "offset_sigma": 0.013}, path)
    return model, path


def test_runtime_matches_eager_and_carries_attributes(exported):
    model, path = exported
    rt = load_runtime(path)
    x = np.random.default_rng(0).random((16, 22)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(rt.predict(x), ref, atol=1e-5)
    assert rt.predict(x[:3]).shape == (3, 19)
    assert rt.version == "test-1"
    assert rt.offset_mu == pytest.approx(-0.005) and rt.offset_sigma == pytest.approx(0.013)
    assert rt.layout["off_scale"] == OFF_SCALE and rt.layout["window"] == 16
    assert rt.layout["model_config"]["d_model"] == 16


def test_loads_in_a_process_that_never_imports_rolypoly(exported):
    _, path = exported
    code = (
        "import json, sys, torch\n"
        f"m = torch.jit.load({str(path)!r})\n"
        "y = m(torch.zeros(1, 7, 22))\n"
        "assert 'rolypoly' not in sys.modules\n"
        "print(json.dumps({'shape': list(y.shape), 'version': m.version, 'mu': m.offset_mu,"
        " 'layout': json.loads(m.layout_json)}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["shape"] == [1, 7, 19]
    assert info["version"] == "test-1"
    assert info["layout"]["vel_scale"] == LAYOUT["vel_scale"]


def test_swing_model_follows_the_contract(tmp_path):
    path = write_swing(tmp_path / "swing.pt")
    rt = load_runtime(path)
    x = np.zeros((4, 22), np.float32)
    x[:, 2] = 0.6                              # closed hi-hat on every row
    x[:, 20] = [0.0, 0.125, 0.25, 0.375]       # on-beat, off-beat, on-beat, off-beat 8ths
    y = rt.predict(x)
    late = y[:, 11] * OFF_SCALE                # hi-hat offset in bar fractions
    assert late[1] > 0.03 and late[3] > 0.03
    assert late[0] == 0 and late[2] == 0
    np.testing.assert_allclose(y[:, :9], x[:, :9])   # score velocities
    assert np.all(y[:, 9:11] == 0)                   # silent drums get no offset
    assert "swing" in rt.version


class _WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :5]


class _NotFinite(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], x.shape[1], 19), float("nan"))


class _Crashes(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, torch.zeros(5, 19))


@pytest.mark.parametrize("cls, message", [(_WrongShape, "wrong contract"), (_NotFinite, "not finite"),
                                          (_Crashes, "forward on a")])
def test_wrong_contract_is_rejected(tmp_path, cls, message):
    path = tmp_path / "bad.pt"
    torch.jit.save(torch.jit.script(cls()), str(path))
    with pytest.raises(ModelError, match=message):
        load_runtime(path)


def test_foreign_module_with_the_contract_loads_with_defaults(tmp_path):
    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], x.shape[1], 19)
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(Plain()), str(path))
    rt = load_runtime(path)
    assert rt.window == 16 and "plain.pt" in rt.version and -0.05 < rt.offset_mu < 0.05


def test_bad_files(tmp_path, exported):
    with pytest.raises(ModelError, match="not found"):
        load_runtime(tmp_path / "missing.pt")
    data = exported[1].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.pt"):
        load_runtime(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ModelError, match="not a TorchScript"):
        load_runtime(tmp_path / "text.pt")
    torch.save({"model": {}}, tmp_path / "eager.pt")
    with pytest.raises(ModelError, match="not a TorchScript"):
        load_runtime(tmp_path / "eager.pt")


def test_predict_rejects_bad_shapes(exported):
    rt = load_runtime(exported[1])
    with pytest.raises(ModelError, match="22"):
        rt.predict(np.zeros((16, 21), np.float32))


def test_swing_module_is_scriptable_with_any_amount():
    m = torch.jit.script(swing_module(0.02))
    x = torch.zeros(1, 2, 22)
    x[0, :, 0] = 1.0
    x[0, 1, 20] = 0.625
    assert float(m(x)[0, 1, 9]) == pytest.approx(0.02 / OFF_SCALE)


# ----------------------------------------------------------------------------- incremental models

@pytest.fixture(scope="module")
def exported_inc(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = RolypolyModel(ModelConfig(n_enc_layers=2, n_dec_layers=2, n_heads=2, d_model=16, d_ff=32,
                                      window=32, span=6, enc_ahead=4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("inc") / "inc.pt"
    export_torchscript(model, {"version": "inc-1"}, path)
    return model, path


def test_an_export_reusing_the_scripted_module_equals_a_fresh_one(tmp_path):
    """A later export of the same architecture (every finetune's) copies its weights and attributes
    into the module scripted before: its file gives what a freshly scripted one gives, and the
    earlier file keeps its own weights."""
    from rolypoly.model import export as ex
    conf = ModelConfig(n_enc_layers=1, n_dec_layers=2, n_heads=2, d_model=16, d_ff=32, window=32, span=6,
                       enc_ahead=4)

    def model(seed):
        torch.manual_seed(seed)
        m = RolypolyModel(conf).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.normal_(0.0, 0.3)
        return m

    x = torch.rand(1, 24, 22)
    ex._SCRIPTED.clear()
    export_torchscript(model(1), {"version": "a", "offset_mu": -0.001}, tmp_path / "a.pt")
    ya = torch.jit.load(str(tmp_path / "a.pt"))(x)
    export_torchscript(model(2), {"version": "b", "offset_mu": -0.003}, tmp_path / "b.pt")   # reuses it
    assert len(ex._SCRIPTED) == 1
    ex._SCRIPTED.clear()
    export_torchscript(model(2), {"version": "b", "offset_mu": -0.003}, tmp_path / "fresh.pt")
    b, fresh = torch.jit.load(str(tmp_path / "b.pt")), torch.jit.load(str(tmp_path / "fresh.pt"))
    assert torch.equal(b(x), fresh(x)) and not torch.allclose(b(x), ya)
    assert (b.version, b.offset_mu) == ("b", -0.003) == (fresh.version, fresh.offset_mu)
    assert torch.equal(torch.jit.load(str(tmp_path / "a.pt"))(x), ya)
    rb, rf = load_runtime(tmp_path / "b.pt"), load_runtime(tmp_path / "fresh.pt")
    rb.reset(x[0].numpy()), rf.reset(x[0].numpy())
    np.testing.assert_array_equal(rb.step(None, x[0, 0].numpy()), rf.step(None, x[0, 0].numpy()))


def test_runtime_steps_a_take_like_the_whole_take_forward(exported_inc):
    model, path = exported_inc
    rt = load_runtime(path)
    assert rt.supports_step
    assert rt.window == 2 * (6 - 1) + 1 == rt.layout["window"]   # the receptive field
    x = np.random.default_rng(1).random((70, 22)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(rt.predict(x), ref, atol=1e-5)
    rt.reset(x)
    ys = [rt.step(x[k - 1] if k else None, x[k]) for k in range(len(x))]
    np.testing.assert_allclose(np.stack(ys), ref, atol=1e-5)
    # reset starts over: the same outputs again (loop mode resets when the score wraps)
    rt.reset(x)
    assert rt.steps_since_reset == 0
    np.testing.assert_allclose(rt.step(None, x[0]), ref[0], atol=1e-5)


def test_step_uses_the_previous_row_as_played(exported_inc):
    _, path = exported_inc
    rt = load_runtime(path)
    x = np.random.default_rng(2).random((4, 22)).astype(np.float32)
    rt.reset(x)
    rt.step(None, x[0])
    a = rt.step(x[0], x[1])
    rt.reset(x)
    rt.step(None, x[0])
    played = x[0].copy()
    played[9:18] = -0.4                          # other realised offsets on row 0
    b = rt.step(played, x[1])
    assert not np.allclose(a, b, atol=1e-4)


def test_step_misuse_is_refused(exported_inc, exported):
    _, path = exported_inc
    rt = load_runtime(path)
    x = np.zeros((2, 22), np.float32)
    with pytest.raises(ModelError, match="step before reset"):
        rt.step(None, x[0])
    rt.reset(x)
    rt.step(None, x[0]); rt.step(x[0], x[1])
    with pytest.raises(ModelError, match="past the end"):
        rt.step(x[1], x[1])
    with pytest.raises(ModelError, match=r"reset expects \(N, 22\)"):
        rt.reset(np.zeros((3, 5), np.float32))
    window_model = load_runtime(exported[1])
    assert not window_model.supports_step
    with pytest.raises(ModelError, match="no incremental decoder"):
        window_model.reset(x)


def test_incremental_export_loads_without_rolypoly(exported_inc):
    _, path = exported_inc
    code = (
        "import sys, torch\n"
        "m = torch.jit.load(sys.argv[1])\n"
        "x = torch.rand(1, 9, 22)\n"
        "mem, cache = m.encode(x), m.new_cache(1)\n"
        "ys = torch.stack([m.step(x[:, max(k - 1, 0)], x[:, k], k, mem, cache) for k in range(9)], 1)\n"
        "assert m.supports_step and 'rolypoly' not in sys.modules\n"
        "print(float((ys - m(x)).abs().max()))\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 1e-5


def test_averaged_checkpoints_hold_the_mean_weights(tmp_path):
    from rolypoly.model.transformer import average_checkpoints, save_checkpoint
    conf = ModelConfig(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=16, d_ff=32)
    paths = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"m{seed}.ckpt")
        save_checkpoint(RolypolyModel(conf), {"version": f"v{seed}"}, paths[-1])
    models = [torch.load(p, weights_only=True)["model"] for p in paths]
    avg, meta = average_checkpoints(paths)
    w = "head.weight"
    assert torch.allclose(avg.state_dict()[w], (models[0][w] + models[1][w] + models[2][w]) / 3, atol=1e-6)
    assert not torch.allclose(avg.state_dict()[w], models[0][w])
    assert meta["version"] == "v1" and meta["averaged_from"] == [str(p) for p in paths]
    other = tmp_path / "other.ckpt"
    save_checkpoint(RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=8, d_ff=16)),
                    {"version": "x"}, other)
    with pytest.raises(ModelError, match="other.ckpt"):
        average_checkpoints([paths[0], other])


def test_export_with_a_per_drum_offset_scale_records_each_drums_factor(tmp_path, capsys):
    """--offset-scale with 9 factors scales each drum's offset row by its own and records the
    product with the scale the checkpoint already had (what finetuning reads back); a wrong
    count is a clear error and writes nothing."""
    from rolypoly.cli import main
    from rolypoly.model.transformer import load_checkpoint, save_checkpoint
    torch.manual_seed(0)
    conf = ModelConfig(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=16, d_ff=32)
    src = tmp_path / "m.ckpt"
    save_checkpoint(RolypolyModel(conf), {"version": "t", "offset_scale": 0.5}, src)
    factors = [0.8, 1.0, 1.2, 0.9, 0.9, 0.9, 0.9, 0.85, 1.0]
    rc = main(["export", str(src), str(tmp_path / "m.pt"), "--ckpt-out", str(tmp_path / "out.ckpt"),
               "--offset-scale", ",".join(map(str, factors))])
    assert rc == 0
    before, _ = load_checkpoint(src)
    after, meta = load_checkpoint(tmp_path / "out.ckpt")
    np.testing.assert_allclose(meta["offset_scale"], 0.5 * np.array(factors))
    np.testing.assert_allclose(after.head.bias.detach()[9:18], before.head.bias.detach()[9:18] * torch.tensor(factors),
                               rtol=1e-6)
    capsys.readouterr()
    assert main(["export", str(src), str(tmp_path / "bad.pt"), "--offset-scale", "0.9,0.9"]) != 0
    assert "offset scale" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()


def test_reset_reuses_the_encoding_of_the_same_score_and_redoes_another(exported_inc):
    from rolypoly.score.features import N_IN
    _, path = exported_inc
    rt = load_runtime(path)
    rng = np.random.default_rng(0)
    a, b = rng.random((40, N_IN)).astype(np.float32), rng.random((40, N_IN)).astype(np.float32)
    rt.reset(a)
    ya = [rt.step(None if k == 0 else a[k - 1], a[k]) for k in range(5)]
    memory = rt._memory
    rt.reset(a.copy())                       # the same rows: no second encoder pass, a fresh cache
    assert rt._memory is memory
    again = [rt.step(None if k == 0 else a[k - 1], a[k]) for k in range(5)]
    np.testing.assert_allclose(np.array(again), np.array(ya), atol=1e-6)
    rt.reset(b)                              # another score is encoded anew
    assert rt._memory is not memory
    yb = rt.step(None, b[0])
    assert not np.allclose(yb, ya[0])


@pytest.mark.parametrize("partial", [True, False])
def test_rows_written_ahead_while_stepping_give_the_whole_scores_outputs(exported_inc, partial):
    """Free mode writes a bar at a time ahead of the rows stepped: with each write followed by
    update(), the steps equal one forward over the final score (encode_part, or a model without
    it that is encoded whole again)."""
    from rolypoly.score.features import N_IN
    model, path = exported_inc
    rt = load_runtime(path)
    if not partial:   # a foreign incremental model: its methods, no encode_part
        class NoPart:
            def __init__(self, m):
                self.encode, self.new_cache, self.step = m.encode, m.new_cache, m.step
                self.supports_step = True
        rt.module = NoPart(rt.module)
    assert hasattr(rt.module, "encode_part") == partial
    final = np.random.default_rng(2).random((96, N_IN)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(final)[None])[0].numpy()
    live = np.zeros_like(final)
    live[:32] = final[:32]                   # the score; the rest is still to be drawn
    rt.reset(live)
    ys, written = [], 32
    for k in range(len(final)):
        while written < len(final) and written - k <= 2 * 4:    # keep the encoder's reach (2 layers x 4) written
            live[written:written + 16] = final[written:written + 16]
            # rows past those written are not read (valid), as a growing take asks
            rt.update(live, written, written + 16, valid=written + 16 if partial else None)
            written += 16
        ys.append(rt.step(final[k - 1] if k else None, final[k]))
    np.testing.assert_allclose(np.stack(ys), ref, atol=1e-5)
    with pytest.raises(ModelError, match="already stepped"):
        rt.update(live, 10, 20)


# ----------------------------------------------------------------------------- the compiled step

def _stepped(rt, x):
    rt.reset(x)
    return np.stack([rt.step(x[k - 1] if k else None, x[k]) for k in range(len(x))])


@pytest.mark.parametrize("which", ["small", "shipped"])
def test_compiled_step_equals_the_torchscript_step(exported_inc, which):
    from pathlib import Path
    path = exported_inc[1] if which == "small" else Path(__file__).parents[1] / "models" / "rolypoly.pt"
    fast, plain = load_runtime(path), load_runtime(path, compiled=False)
    assert fast.compiled_step and not plain.compiled_step
    x = np.random.default_rng(5).random((120, 22)).astype(np.float32)
    a, b = _stepped(fast, x), _stepped(plain, x)
    assert np.abs(a).max() > 0.05           # outputs that say something, not zeros on both sides
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_compiled_step_stays_off_when_its_weights_disagree_or_are_missing(exported_inc):
    from rolypoly.model.stepper import CompiledStep
    model, path = exported_inc
    x = np.random.default_rng(6).random((30, 22)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None])[0].numpy()

    class Module:   # the file's methods; step_weights as given
        def __init__(self, m, weights):
            self.encode, self.new_cache, self.step, self.supports_step = m.encode, m.new_cache, m.step, True
            if weights is not None:
                self.step_weights = lambda: weights

    rt = load_runtime(path)
    good = rt.module.step_weights()
    for weights in ([w * 1.01 for w in good], good[:-1], None):
        rt.module = Module(load_runtime(path, compiled=False).module, weights)
        assert rt.enable_compiled_step() is False and not rt.compiled_step
        np.testing.assert_allclose(_stepped(rt, x), ref, atol=1e-5)   # the TorchScript step plays on
    with pytest.raises(ModelError, match="do not follow"):
        CompiledStep(good[:-1], n_heads=2, span=6)
    with pytest.raises(ModelError, match="step before bind"):
        CompiledStep(good, n_heads=2, span=6).step(None, x[0], 0)


def test_step_weights_follow_the_documented_order(exported_inc):
    from rolypoly.model.stepper import WEIGHT_ORDER
    model = exported_inc[0]
    state = model.state_dict()
    names = [n for n in WEIGHT_ORDER if "<i>" not in n]
    per_layer = [n for n in WEIGHT_ORDER if "<i>" in n]
    expected = names[:3] + [n.replace("<i>", str(i)) for i in range(model.n_dec) for n in per_layer] + names[3:]
    got = model.step_weights()
    assert len(got) == len(expected)
    for name, t in zip(expected, got):
        assert torch.equal(state[name], t), name
