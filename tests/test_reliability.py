"""The reliability campaign's parts on small counts (the full counts: rolypoly bench reliability)."""
from __future__ import annotations

import json

import pytest


def test_mutations_change_the_input_and_are_reproducible():
    from rolypoly.bench.reliability import mutate
    data = bytes(range(64))
    ops = [("flip", 3, b""), ("insert", 10, b"abc"), ("extreme", 20, b""), ("truncate", 50, b"")]
    assert mutate(data, ops) == mutate(data, ops) != data
    assert len(mutate(data, [("truncate", 0, b"")])) == 0


@pytest.mark.parametrize("target,n", [("score", 150), ("kit", 80)])
def test_fuzzed_readers_end_in_a_result_or_a_rolypoly_error(target, n, tmp_path):
    from rolypoly.bench.reliability import fuzz_worker
    out = fuzz_worker(target, n, seed=7, work=str(tmp_path))
    assert out["inputs"] == n
    assert out["other_errors"] == 0 and out["hangs"] == 0, out["examples"]
    assert out["rolypoly_errors"] > 0 and out["valid"] + out["rolypoly_errors"] == n


def test_fuzzed_presets(tmp_path):
    from rolypoly.bench.reliability import fuzz_worker, presets_dir
    if presets_dir() is None:
        pytest.skip("no shared presets")
    out = fuzz_worker("mtpreset", 80, seed=7, work=str(tmp_path))
    assert out["other_errors"] == 0 and out["hangs"] == 0, out["examples"]


def test_fuzzed_takes(tmp_path):
    from rolypoly.bench.reliability import fuzz_worker
    from rolypoly.live.takes import save_take
    import numpy as np
    from rolypoly.live.takes import ROW_FIELDS
    rows = {f: np.zeros((4, 9)) if f in ("real_vel", "real_off", "score_vel", "pred") else np.zeros(4)
            for f in ROW_FIELDS}
    rows["has_onset"] = np.array([True, False, True, False])
    from tests.conftest import REPO
    take = save_take(tmp_path / "takes", {"sample_rate": 48000}, rows, [{"time_s": 0.1}], [], None, 48000,
                     str(REPO / "data" / "demo.mid"))
    out = fuzz_worker("take", 120, seed=7, work=str(tmp_path / "fuzz"), template=str(take))
    assert out["inputs"] == 120 and out["other_errors"] == 0 and out["hangs"] == 0, out["examples"]


def test_a_pickled_payload_in_a_checkpoint_never_runs(tmp_path):
    from rolypoly.bench.reliability import _write_evil_checkpoint
    from rolypoly.errors import ModelError
    from rolypoly.model.export import load_runtime
    from rolypoly.model.transformer import read_checkpoint
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    _write_evil_checkpoint(evil, marker)
    with pytest.raises(ModelError):
        read_checkpoint(evil)
    with pytest.raises(ModelError):
        load_runtime(evil)
    assert not marker.exists()


@pytest.mark.slow
def test_quick_security_campaign_from_the_command_line(capsys):
    from rolypoly.cli import main
    assert main(["bench", "reliability", "--quick", "--only", "security", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["failures"] == 0 and all(r["passed"] for r in out["security"]), out["security"]


@pytest.mark.slow
def test_a_bench_removes_its_work_files_unless_asked_to_keep_them(tmp_path, monkeypatch, capsys):
    """Benches write takes and model versions into temporary folders; left behind, a few duet
    runs fill a disk (and then a training run cannot write its checkpoint)."""
    import tempfile
    from rolypoly.cli import main
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["bench", "reliability", "--quick", "--only", "security", "--json"]) == 0
    assert list(tmp_path.iterdir()) == []
    assert main(["bench", "reliability", "--quick", "--only", "security", "--json", "--keep-work"]) == 0
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("rolypoly-bench-reliability-")
    assert f"work files kept in {kept[0]}" in capsys.readouterr().err
