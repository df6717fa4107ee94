"""The demo: an offline duet on bundled material, with train-after-take.

A virtual guitarist plays the bundled demo score (``data/demo.mid``) with a laid-back
feel; the drum machine plays along offline, listening; it is finetuned on that take and
plays a second take; in a third, the score ends and the event model keeps playing in its
style (``continue`` mode).  Writes ``outputs/demo/`` (drums, stereo mix, the performance as
MIDI, the take records) and prints the asynchrony of both takes next to a quantised
drum machine's.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from rolypoly.config import REPO_DIR

DEMO_SCORE = REPO_DIR / "data" / "demo.mid"


def run_demo(cfg, score_path: str | None = None, as_json: bool = False, feel: str = "laid_back") -> int:
    from rolypoly.io import write_wav
    from rolypoly.learn.finetune import train_after_take
    from rolypoly.report import Table, emit
    from rolypoly.score.midi import read_score
    from rolypoly.sim.duet import (
        asynchrony_ms,
        play_take,
        quantised_asynchrony_ms,
        virtual_take,
    )
    t0 = time.perf_counter()
    path = Path(score_path) if score_path else DEMO_SCORE
    score = read_score(path)
    out = Path(cfg.outputs_dir) / "demo"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sr = int(cfg.audio.sample_rate)
    table = Table(f"demo: duet on {path.name} with a {feel.replace('_', ' ')} virtual guitarist",
                  ["take", "model", "asynchrony ms", "quantised machine ms", "onsets heard", "late rows", "files"])
    model = str(cfg.engine.model_path)
    work = None  # takes and model versions go to takes_dir and models_dir: `rolypoly takes list` shows them
    from rolypoly.plots import plot_losses, plot_takes
    played = []
    for take in (1, 2):
        audio, rows, onsets = virtual_take(score, feel, seed=take, sr=sr)
        res = play_take(cfg, path, audio, model, work)
        sub = out / f"take{take}"
        write_wav(sub / "drums.wav", res.drums, sr)
        write_wav(sub / "mix.wav", res.mix, sr)
        write_wav(sub / "guitar.wav", audio, sr)
        shutil.copyfile(res.take_dir / "performance.mid", sub / "performance.mid")
        shutil.copytree(res.take_dir, sub / "take")
        plot_takes([res.take_dir], sub / "groove.png", labels=["pretrained" if take == 1 else "finetuned on take 1"])
        played.append(res.take_dir)
        table.add(take, "pretrained" if take == 1 else Path(model).parent.name,
                  round(asynchrony_ms(res.hits, sr, score, rows, onsets), 2),
                  round(quantised_asynchrony_ms(score, rows, onsets), 2), res.onsets, res.late_rows, str(sub))
        if take == 1:
            version = train_after_take(cfg, res.take_dir, base_model=model)
            table.notes.append(f"finetuned on take 1 in {version.seconds:.1f} s -> {version.path}")
            plot_losses(version.losses, out / "finetune_loss.png", title=f"finetuning on take 1 ({version.path.name})")
            model = str(version.torchscript)
    plot_takes(played, out / "groove_before_after.png", labels=["before finetuning", "after finetuning"],
               span_s=(0.0, 10.0))
    table.notes.append(f"groove plots: {out}/take*/groove.png, {out}/groove_before_after.png (first 10 s), "
                       f"{out}/finetune_loss.png")
    from rolypoly.free.takes import continue_take  # take 3: the score ends, the machine plays on
    table.add(*continue_take(cfg, score, out / "take3", model, work, feel))
    table.notes.append(f"asynchrony = mean |drum hit - guitar onset| over the hits of rows where both sound; "
                       f"total {time.perf_counter() - t0:.0f} s")
    emit(table, as_json=as_json)
    return 0
