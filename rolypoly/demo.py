"""The demo: the bundled score through the whole data path, offline."""
from __future__ import annotations

from pathlib import Path

from rolypoly.config import REPO_DIR

DEMO_SCORE = REPO_DIR / "data" / "demo.mid"


def run_demo(cfg, score_path: str | None = None, as_json: bool = False) -> int:
    """Read the demo score and print its rows (grows into the offline duet)."""
    from rolypoly.report import Table, emit
    from rolypoly.score import read_score
    score = read_score(Path(score_path) if score_path else DEMO_SCORE)
    table = Table(f"demo score {score.path}", ["row", "time_ms", "bar", "phase", "bpm", "tsig", "hits"])
    for row in score.summary_rows():
        table.add(*row)
    emit(table, as_json=as_json, extra={"rows": score.n_rows, "length_ms": round(score.length_ms, 1)})
    return 0
