"""The package's shape: a light top-level import, no import cycles, one home per feature column."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

PACKAGE = Path(__file__).resolve().parents[1] / "rolypoly"
README = PACKAGE.parent / "README.md"


def test_import_rolypoly_is_light():
    code = ("import sys, rolypoly; heavy = [m for m in ('torch', 'numba', 'librosa') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import rolypoly pulled in {out}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Modules imported when ``path`` is imported (function-level imports run later and are left out)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m == "rolypoly" or m.startswith("rolypoly.")}


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = {d for d in _top_level_imports(path, name) if d in modules and d != name}
        # a package's __init__ importing its own children is how packages are built, not a cycle
        if path.name == "__init__.py":
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                cyc = visit(d)
                if cyc:
                    return cyc
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            cyc = visit(n)
            if cyc:
                return cyc
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert "rolypoly.live.engine" in graph and graph["rolypoly.live.engine"], "the walk found no imports"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_readme_layout_lists_every_folder():
    text = README.read_text()
    section = text[text.index("## Layout"):]
    section = section[: section.find("\n## ", 4)] if "\n## " in section[4:] else section
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    missing = [f for f in folders if not re.search(rf"`{f}/`", section)]
    assert not missing, f"README layout section does not list {missing}"


def test_feature_columns_partition_the_row():
    from rolypoly.score import features as feat
    cols = np.zeros(feat.N_IN, int)
    for part in (feat.VEL, feat.OFF, feat.BPM, feat.TSIG, feat.PHASE, feat.TAU_G):
        cols[part] += 1
    assert (cols == 1).all(), "every input column belongs to exactly one feature"
    assert feat.CONTEXT == slice(feat.BPM, feat.PHASE + 1)
    x = feat.encode_rows(np.full((1, 9), 127.0), np.full((1, 9), 0.01), [140.0], [0.75], [0.25], [0.02])
    assert np.allclose(x[0, feat.VEL], 1.0) and np.allclose(x[0, feat.OFF], 0.01 / feat.OFF_SCALE)
    assert x[0, feat.TSIG] == 0.75 and x[0, feat.PHASE] == 0.25
    assert np.isclose(x[0, feat.TAU_G], 0.02 / feat.OFF_SCALE)


def test_model_reads_its_columns_from_features():
    # the network takes its column bounds from features: moving a column there moves it here
    import torch

    from rolypoly.model.transformer import ModelConfig, RolypolyModel
    from rolypoly.score import features as feat
    m = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=8, d_ff=16)).eval()
    assert (m.c_vel0, m.c_vel1, m.c_off0, m.c_off1) == (feat.VEL.start, feat.VEL.stop, feat.OFF.start, feat.OFF.stop)
    assert (m.c_bpm, m.c_phase, m.c_tau) == (feat.BPM, feat.PHASE, feat.TAU_G)
    x = torch.zeros(1, 4, feat.N_IN)
    y0 = m(x)
    x2 = x.clone()
    x2[0, 3, feat.OFF] = 0.3  # the last row's played offsets are history for no later row
    assert torch.allclose(m(x2), y0), "a row's own offsets must not inform its prediction"
