"""Train-after-take adaptation: asynchrony over takes for several musician feels.

For each feel, the virtual musician plays the same score for N takes (new jitter each
take); after each take the model is finetuned on it.  References in the same run: a
quantised drum machine (score timing) and the pretrained model never finetuned.
Asynchrony = mean |drum hit - musician onset| over the hits of rows where both sound.
The listener's mean error (heard - true onset) is shown per take: the drums lean towards
what is heard, so a listener that hears early holds the asynchrony up.

``--json`` keys: ``asynchrony_per_take_ms`` (feel, seed, take, quantised, pretrained, adapting,
model, listener_ms, finetune_s), ``after_the_finetuned_takes`` (the last take per feel, the mean
over the seeds), ``finetune_speed``, and per feel ``ratio_to_quantised``, ``minus_pretrained_ms``
(means over the seeds; ``ratio_per_seed``, ``minus_pretrained_ms_per_seed`` each seed's),
``listener_ms`` (the mean over its takes), plus ``finetune_2min_s`` and ``finetune_2min_cpu_s``
(wall and CPU seconds of finetuning a 2-minute take).
"""
from __future__ import annotations

HELP = "train-after-take adaptation: asynchrony per take vs quantised and pretrained"


def add_arguments(p) -> None:
    p.add_argument("--feels", default="laid_back,swing,rushing,on_grid", help="comma-separated feels")
    p.add_argument("--takes", type=int, default=4, help="takes per feel (default 4)")
    p.add_argument("--bars", type=int, default=12, help="bars of the demo score to play (default 12)")
    p.add_argument("--score", default=None, help="score to play (default data/demo.mid)")
    p.add_argument("--seeds", default="7", help="comma-separated musician seeds; the summary is their mean "
                   "(default 7; each finetune is 20 steps, so a ratio moves by a few hundredths from seed to seed)")


def run(cfg, args):
    import tempfile
    import time
    from pathlib import Path

    import numpy as np

    from rolypoly.config import with_values
    from rolypoly.errors import RolypolyError
    from rolypoly.learn.finetune import train_after_take
    from rolypoly.report import Table, progress
    from rolypoly.score.midi import read_score
    from rolypoly.sim.corpus import groove_score
    from rolypoly.sim.demo import DEMO_SCORE
    from rolypoly.sim.duet import adaptation, play_take, virtual_take
    try:
        seeds = [int(v) for v in str(args.seeds).split(",") if v.strip()]
    except ValueError:
        raise RolypolyError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if not seeds:
        raise RolypolyError("--seeds names no seed")
    work = Path(tempfile.mkdtemp(prefix="rolypoly-bench-duet-"))
    score = read_score(args.score or DEMO_SCORE).crop_bars(args.bars)
    score_path = score.write_midi(work / "score.mid")
    feels = [f.strip() for f in args.feels.split(",") if f.strip()]
    per_take = Table("asynchrony per take (ms)", ["feel", "seed", "take", "quantised", "pretrained", "adapting",
                                                  "model", "listener ms", "finetune s"])
    summary = Table("after the finetuned takes", ["feel", "quantised ms", "pretrained ms", "adapting ms",
                                                  "adapting / quantised", "adapting - pretrained ms", "target"])
    extra = {}
    for feel in progress(feels, desc="feels"):
        lasts, heard = [], []
        for seed in seeds:
            rows = adaptation(cfg, score_path, feel, n_takes=args.takes, seed=seed, work_dir=work / feel / str(seed))
            for r in rows:
                per_take.add(feel, seed, r["take"], r["quantised_ms"], r["pretrained_ms"], r["adapting_ms"],
                             r["model"], r["listener_ms"], r["finetune_s"] if r["finetune_s"] is not None else "-")
            lasts.append(rows[-1])
            heard += [r["listener_ms"] for r in rows]
        mean = {k: float(np.mean([r[k] for r in lasts])) for k in ("quantised_ms", "pretrained_ms", "adapting_ms")}
        ratios = [r["adapting_ms"] / r["quantised_ms"] if r["quantised_ms"] > 0 else float("nan") for r in lasts]
        diffs = [r["adapting_ms"] - r["pretrained_ms"] for r in lasts]
        ratio, diff = float(np.mean(ratios)), float(np.mean(diffs))
        target = "<= +2 ms vs pretrained" if feel == "on_grid" else "<= 30 % of quantised"
        summary.add(feel, mean["quantised_ms"], mean["pretrained_ms"], mean["adapting_ms"], ratio, diff, target)
        extra[feel] = {"ratio_to_quantised": ratio, "minus_pretrained_ms": diff, "listener_ms": float(np.mean(heard)),
                       "ratio_per_seed": ratios, "minus_pretrained_ms_per_seed": diffs}
    # Finetuning speed on a 2-minute take (60 bars at 120 bpm).
    long_score = groove_score(60, 120.0)
    long_path = long_score.write_midi(work / "two_minutes.mid")
    audio, _, _ = virtual_take(long_score, "laid_back", seed=3, sr=int(cfg.audio.sample_rate))
    res = play_take(cfg, long_path, audio, str(cfg.engine.model_path), work / "long")
    t0, c0 = time.perf_counter(), time.process_time()
    train_after_take(with_values(cfg, models_dir=str(work / "long" / "models")), res.take_dir)
    ft_s, ft_cpu = time.perf_counter() - t0, time.process_time() - c0
    # CPU seconds too: on a shared machine the wall time grows with the load, the CPU time much less
    speed = Table("finetune speed", ["take", "rows", "epochs", "seconds", "cpu seconds", "target"])
    speed.add("2 minutes (60 bars, 120 bpm)", res.rows, int(cfg.finetune.epochs), ft_s, ft_cpu, "<= 5 s")
    extra["finetune_2min_s"] = ft_s
    extra["finetune_2min_cpu_s"] = ft_cpu
    summary.notes.append(f"score: {args.score or DEMO_SCORE} first {args.bars} bars; {args.takes} takes per feel; "
                         f"musician seeds {', '.join(map(str, seeds))} (the mean of their last takes); "
                         f"work files in {work}" + ("" if getattr(args, "keep_work", False) else " (removed at the end; "
                                                    "--keep-work keeps them)"))
    summary.notes.append("listener ms: the listener's mean error (heard - true onset); the drums lean towards what "
                         "is heard, so it sets a floor under the asynchrony")
    return [per_take, summary, speed], extra
