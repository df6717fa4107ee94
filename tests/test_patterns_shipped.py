"""The compact pattern table shipped in data/: readable, credited, and enough to answer on a fresh clone."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rolypoly.patterns import introspect as it

REPO = Path(__file__).resolve().parents[1]


def test_shipped_table_reads_and_credits_gmd():
    per_take, key = it.read_shipped_table()
    assert len(per_take) > 300                       # GMD train has hundreds of takes
    bars = np.concatenate(per_take)
    assert bars.shape[1] == 9 and bars.max() < 1 << 16
    assert (bars[:, 0] > 0).mean() > 0.5              # most bars have a kick
    with np.load(it.SHIPPED_TABLE) as z:
        assert "Gillick" in str(z["credit"]) and "CC BY 4.0" in str(z["credit"])
    assert it.SHIPPED_TABLE.stat().st_size < 3 * 1024 * 1024
    assert "Gillick" in (REPO / "data" / "README.md").read_text()


def test_shipped_table_roundtrip_and_bad_file(tmp_path):
    takes = [np.array([[1, 16, 0, 0, 0, 0, 0, 0, 0], [17, 0, 3, 0, 0, 0, 0, 0, 0]]), np.array([[4369, 4112, 0, 0, 0, 0, 0, 0, 65535]])]
    path = it.write_shipped_table(takes, "k", tmp_path / "t.npz")
    back, key = it.read_shipped_table(path)
    assert key == "k" and [b.tolist() for b in back] == [t.tolist() for t in takes]
    (tmp_path / "bad.npz").write_bytes(b"not a table")
    with pytest.raises(it.IntrospectError, match="bad.npz"):
        it.read_shipped_table(tmp_path / "bad.npz")


def test_fresh_clone_answers_without_gmd(tmp_path):
    """A checkout with no cache/ and no GMD anywhere near it still answers an ask."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("rolypoly", "configs", "data"):
        shutil.copytree(REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__", "groove"))
    assert not (clone / "cache").exists()
    env = dict(os.environ, PYTHONPATH=str(clone))
    out = subprocess.run([sys.executable, "-m", "rolypoly", "introspect", "ask", "--from", "kick", "--to", "snare",
                          "--pattern", "x---x---x---x---", "--seed", "3", "--json"],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = next(iter(json.loads(out.stdout).values()))
    assert rows[0]["to"] == "snare" and rows[0]["level"] == "exact"
    assert len(rows[0]["pattern"]) == 16 and set(rows[0]["pattern"]) <= {"x", "-"}
    assert (clone / "cache" / "patterns.sqlite").is_file()
    table = it.PatternTable(clone / "cache" / "patterns.sqlite")
    assert table.info["corpus"].startswith("shipped GMD train")
    table.close()
