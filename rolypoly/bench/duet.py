"""Train-after-take adaptation: asynchrony over takes for several musician feels.

For each feel, the virtual musician plays the same score for N takes (new jitter each
take); after each take the model is finetuned on it.  References in the same run: a
quantised drum machine (score timing) and the pretrained model never finetuned.
Asynchrony = mean |drum hit - musician onset| over the hits of rows where both sound.
"""
from __future__ import annotations

HELP = "train-after-take adaptation: asynchrony per take vs quantised and pretrained"


def add_arguments(p) -> None:
    p.add_argument("--feels", default="laid_back,swing,rushing,on_grid", help="comma-separated feels")
    p.add_argument("--takes", type=int, default=4, help="takes per feel (default 4)")
    p.add_argument("--bars", type=int, default=12, help="bars of the demo score to play (default 12)")
    p.add_argument("--score", default=None, help="score to play (default data/demo.mid)")


def run(cfg, args):
    import tempfile
    import time
    from pathlib import Path

    from rolypoly.learn.finetune import train_after_take
    from rolypoly.report import Table, progress
    from rolypoly.score.midi import read_score
    from rolypoly.sim.demo import DEMO_SCORE
    from rolypoly.config import with_values
    from rolypoly.sim.corpus import groove_score
    from rolypoly.sim.duet import adaptation, play_take, virtual_take
    work = Path(tempfile.mkdtemp(prefix="rolypoly-bench-duet-"))
    score = read_score(args.score or DEMO_SCORE).crop_bars(args.bars)
    score_path = score.write_midi(work / "score.mid")
    feels = [f.strip() for f in args.feels.split(",") if f.strip()]
    per_take = Table("asynchrony per take (ms)", ["feel", "take", "quantised", "pretrained", "adapting", "model",
                                                  "finetune s"])
    summary = Table("after the finetuned takes", ["feel", "quantised ms", "pretrained ms", "adapting ms",
                                                  "adapting / quantised", "adapting - pretrained ms", "target"])
    extra = {}
    for feel in progress(feels, desc="feels"):
        rows = adaptation(cfg, score_path, feel, n_takes=args.takes, seed=7, work_dir=work / feel)
        for r in rows:
            per_take.add(feel, r["take"], r["quantised_ms"], r["pretrained_ms"], r["adapting_ms"], r["model"],
                         r["finetune_s"] if r["finetune_s"] is not None else "-")
        last = rows[-1]
        ratio = last["adapting_ms"] / last["quantised_ms"] if last["quantised_ms"] > 0 else float("nan")
        diff = last["adapting_ms"] - last["pretrained_ms"]
        target = "<= +2 ms vs pretrained" if feel == "on_grid" else "<= 50 % of quantised"
        summary.add(feel, last["quantised_ms"], last["pretrained_ms"], last["adapting_ms"], ratio, diff, target)
        extra[feel] = {"ratio_to_quantised": ratio, "minus_pretrained_ms": diff}
    # Finetuning speed on a 2-minute take (60 bars at 120 bpm).
    long_score = groove_score(60, 120.0)
    long_path = long_score.write_midi(work / "two_minutes.mid")
    audio, _, _ = virtual_take(long_score, "laid_back", seed=3, sr=int(cfg.audio.sample_rate))
    res = play_take(cfg, long_path, audio, str(cfg.engine.model_path), work / "long")
    t0 = time.perf_counter()
    version = train_after_take(with_values(cfg, models_dir=str(work / "long" / "models")), res.take_dir)
    ft_s = time.perf_counter() - t0
    speed = Table("finetune speed", ["take", "rows", "epochs", "seconds", "target"])
    speed.add("2 minutes (60 bars, 120 bpm)", res.rows, int(cfg.finetune.epochs), ft_s, "<= 5 s")
    extra["finetune_2min_s"] = ft_s
    summary.notes.append(f"score: {args.score or DEMO_SCORE} first {args.bars} bars; {args.takes} takes per feel; "
                         f"work files in {work}")
    return [per_take, summary, speed], extra
