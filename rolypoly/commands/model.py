"""Model commands: ``rolypoly pretrain``, ``rolypoly eval model|baselines``, ``rolypoly export``."""
from __future__ import annotations

from pathlib import Path


def register(sub, common) -> None:
    p = sub.add_parser(
        "pretrain", parents=[common], help="pretrain the performance model on GMD (resumable)",
        description="Teacher-forced next-row pretraining on GMD train with validation on GMD validation "
                    "(AdamW, warmup + cosine decay, gradient clipping, synthetic partner). Re-running the same "
                    "command resumes from train.out_dir/last.pt; train.out_dir/best.pt keeps the best validation "
                    "loss; train.out_dir/loss.png plots the curves. Under torchrun it trains with "
                    "DistributedDataParallel. Examples: rolypoly pretrain train.max_steps=3000 train.threads=2 ; "
                    "rolypoly pretrain model=rolypoly_v2 train.out_dir=runs/v2 ; "
                    "torchrun --nproc_per_node 4 -m rolypoly pretrain")
    p.set_defaults(func=pretrain)

    ev = sub.add_parser("eval", parents=[common], help="evaluate a model or the baselines on GMD test")
    esub = ev.add_subparsers(dest="eval_command", metavar="<what>")
    ev.set_defaults(subparser=ev)
    em = esub.add_parser(
        "model", parents=[common], help="timing/velocity MAE of a model in three conditions, with baselines",
        description="Score a model on the GMD test protocol (4/4 takes, 16th grid) with the same metric "
                    "functions as the baselines, in three conditions: teacher-forced (real earlier offsets), "
                    "free-running (own earlier predictions) and partner-following (own predictions plus the "
                    "real drummer's mean offset as tau_g). Example: rolypoly eval model --model models/rolypoly.pt")
    em.add_argument("--model", default=None,
                    help="a .ckpt (eager weights) or .pt (TorchScript) file; default: engine.model_path")
    em.add_argument("--per-drum", action="store_true", help="also print per-drum tables")
    em.set_defaults(func=eval_model)
    eb = esub.add_parser("baselines", parents=[common], help="the protocol's baselines (zero, lookup, same-take)",
                         description="Print the baselines of the GMD test protocol.")
    eb.set_defaults(func=eval_baselines)

    ex = sub.add_parser(
        "export", parents=[common], help="export a checkpoint to TorchScript (or write the swing model)",
        description="Write a TorchScript file that loads with torch.jit.load alone and carries its feature "
                    "layout, scaling constants, GMD offset statistics and version. Examples: "
                    "rolypoly export runs/pretrain/best.pt models/rolypoly.pt ; rolypoly export --swing models/swing.pt")
    ex.add_argument("checkpoint", nargs="?", help="eager checkpoint (.ckpt/.pt from rolypoly pretrain)")
    ex.add_argument("output", nargs="?", help="TorchScript file to write")
    ex.add_argument("--swing", metavar="OUT", help="write the example swing model to OUT instead")
    ex.add_argument("--ckpt-out", metavar="PATH", help="also write the weights-only eager checkpoint here")
    ex.set_defaults(func=export)


def pretrain(args, cfg) -> int:
    import sys

    from rolypoly.model.pretrain import pretrain as run
    result = run(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        from rolypoly.report import Table, emit
        t = Table("pretraining", ["out_dir", "steps", "best validation loss", "best step", "seconds", "resumed from"])
        t.add(result.out_dir, result.steps, result.best_val, result.best_step, round(result.seconds, 1),
              result.resumed_from)
        emit(t, as_json=args.json)
    return 0


def eval_model(args, cfg) -> int:
    """``rolypoly eval model``: one table with the baselines and the three conditions."""
    import time

    from rolypoly.metrics import PROTOCOL, baselines, eval_takes
    from rolypoly.model.evaluate import CONDITIONS, evaluate, predictor_from_path
    from rolypoly.report import Table, emit
    from rolypoly.score.gmd import load_gmd

    path = args.model or str(cfg.engine.model_path)
    predict, desc, block = predictor_from_path(path)
    takes = load_gmd(cfg, grid="16", show_progress=False)
    test = eval_takes(takes)
    t0 = time.perf_counter()
    res = evaluate(predict, test, block)
    seconds = time.perf_counter() - t0
    table = Table("GMD test: timing and velocity MAE", ["predictor", "condition", "hits", "timing MAE (ms)",
                                                        "velocity MAE"])
    for b in baselines(takes.split("train"), test):
        table.add(b["predictor"], "baseline", b["hits"], b["timing_ms"], b["velocity"])
    for c in CONDITIONS:
        table.add(f"model {Path(path).name}", c, res[c]["hits"], res[c]["timing_ms"], res[c]["velocity"])
    table.notes.append(PROTOCOL)
    table.notes.append(f"model: {desc}; window {block} rows; evaluated in {seconds:.0f} s")
    tables = [table]
    drum = Table("per drum: timing MAE (ms) / velocity MAE", ["drum", "hits"] + [f"{c} timing" for c in CONDITIONS]
                 + [f"{c} velocity" for c in CONDITIONS])
    for i, d in enumerate(res[CONDITIONS[0]]["per_drum"]):
        drum.add(d["drum"], d["hits"], *[res[c]["per_drum"][i]["timing_ms"] for c in CONDITIONS],
                 *[res[c]["per_drum"][i]["velocity"] for c in CONDITIONS])
    if getattr(args, "per_drum", False) or args.json:
        tables.append(drum)
    emit(tables, as_json=args.json, extra={"model": desc, "protocol": PROTOCOL} if args.json else None)
    return 0


def eval_baselines(args, cfg) -> int:
    from rolypoly.metrics import PROTOCOL, baselines, eval_takes
    from rolypoly.report import Table, emit
    from rolypoly.score.gmd import load_gmd
    takes = load_gmd(cfg, grid="16")
    test = eval_takes(takes)
    t = Table("GMD test baselines", ["predictor", "rows", "hits", "timing MAE (ms)", "velocity MAE"])
    for r in baselines(takes.split("train"), test):
        t.add(r["predictor"], r["rows"], r["hits"], r["timing_ms"], r["velocity"])
    t.notes.append(PROTOCOL)
    emit(t, as_json=args.json, extra={"protocol": PROTOCOL} if args.json else None)
    return 0


def export(args, cfg) -> int:
    """``rolypoly export``."""
    from rolypoly.errors import ConfigError
    from rolypoly.model.export import export_torchscript, load_runtime, write_swing
    from rolypoly.report import Table, emit
    t = Table("export", ["written", "version", "bytes"])
    if args.swing:
        p = write_swing(args.swing)
        rt = load_runtime(p)
        t.add(str(p), rt.version, p.stat().st_size)
    else:
        if not args.checkpoint or not args.output:
            raise ConfigError("rolypoly export needs CHECKPOINT OUTPUT (or --swing OUT)")
        from rolypoly.model.transformer import load_checkpoint, save_checkpoint
        model, meta = load_checkpoint(args.checkpoint)
        p = export_torchscript(model, meta, args.output)
        t.add(str(p), meta.get("version", "?"), p.stat().st_size)
        if args.ckpt_out:
            keep = {k: v for k, v in meta.items() if k != "history"}
            save_checkpoint(model, keep, args.ckpt_out)
            t.add(str(args.ckpt_out), meta.get("version", "?"), Path(args.ckpt_out).stat().st_size)
    emit(t, as_json=args.json)
    return 0
