"""A duet take in ``continue`` mode: the score ends and the drum machine keeps playing.

Used by ``rolypoly demo`` for its third take: the event model continues the score for
``generate.bars`` bars, the virtual musician plays along the whole (continued) piece, and
the drum machine plays it offline while listening, as in the first two takes.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def continue_take(cfg, score, sub: Path, model: str, work: Path, feel: str = "laid_back", seed: int = 3) -> list:
    """Play a continued take; writes ``sub/`` (score.mid, drums/mix/guitar WAVs, performance.mid, take/).

    Returns the demo table's row: take, model, asynchrony, quantised asynchrony, onsets, late rows, folder.
    """
    from rolypoly.free.generate import generate
    from rolypoly.free.runtime import load_events
    from rolypoly.io import write_wav
    from rolypoly.sim.duet import (
        asynchrony_ms,
        play_take,
        quantised_asynchrony_ms,
        virtual_take,
    )
    sr = int(cfg.audio.sample_rate)
    g = cfg.generate
    gen = generate(load_events(g.events_model), score, "continue", bars=int(g.bars),
                   temperature=float(g.temperature), generate_vels=tuple(float(v) for v in g.generate_vels),
                   density=g.density, complexity=g.complexity, seed=seed if g.seed is None else int(g.seed))
    sub = Path(sub)
    sub.mkdir(parents=True, exist_ok=True)
    continued = gen.score
    continued.path = str(sub / "score.mid")
    continued.write_midi(sub / "score.mid")
    audio, rows, onsets = virtual_take(continued, feel, seed=seed, sr=sr)
    res = play_take(cfg, sub / "score.mid", audio, model, work)
    write_wav(sub / "drums.wav", res.drums, sr)
    write_wav(sub / "mix.wav", res.mix, sr)
    write_wav(sub / "guitar.wav", audio, sr)
    shutil.copyfile(res.take_dir / "performance.mid", sub / "performance.mid")
    shutil.copytree(res.take_dir, sub / "take")
    label = f"{Path(model).parent.name} + continue ({int(gen.generated.sum())} generated rows, bars {gen.first_bar}-" \
            f"{int(continued.bar[-1])})"
    return [3, label, round(asynchrony_ms(res.hits, sr, continued, rows, onsets), 2),
            round(quantised_asynchrony_ms(continued, rows, onsets), 2), res.onsets, res.late_rows, str(sub)]
