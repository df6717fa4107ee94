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
                    "rolypoly pretrain model=rolypoly_inc train.out_dir=runs/inc train.init_from=models/rolypoly_v1.ckpt "
                    "train.accent_share=0.5 (the incremental model, warm-started) ; "
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
                    "real drummer's mean offset as tau_g), with the velocity distribution (histogram "
                    "intersection with GMD test, mean velocity per drum). Incremental models are scored as "
                    "the engine plays them (score encoded once, one step per row). Give --model several times "
                    "to compare models in one run. Example: rolypoly eval model --model models/rolypoly_v1.pt "
                    "--model models/rolypoly_inc.pt")
    em.add_argument("--model", action="append", default=None,
                    help="a .ckpt (eager weights) or .pt (TorchScript) file; repeat to compare; "
                         "default: engine.model_path")
    em.add_argument("--per-drum", action="store_true", help="also print per-drum tables")
    em.add_argument("--split", default="test", choices=("test", "validation"),
                    help="GMD split (default test; choose between models on validation, report test)")
    em.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: thousands of small batched steps; more threads only "
                         "pay on an idle machine)")
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
    ex.add_argument("--average", nargs="+", metavar="CKPT", default=None,
                    help="export the mean of CHECKPOINT's weights and these checkpoints' (one architecture)")
    ex.add_argument("--velocity-curve", action="store_true",
                    help="fit the velocity curve (quantile map on GMD train, blend chosen on GMD validation) "
                         "before exporting; see rolypoly.model.velocity")
    ex.add_argument("--offset-scale", default=None, metavar="A",
                    help="multiply the model's drum offsets by A (0 < A <= 2; its head's offset rows), or each "
                         "drum's by its own (9 comma-separated factors, kick first): a model whose own earlier "
                         "offsets feed its next ones can overshoot; choose A on GMD validation "
                         "(rolypoly eval model --split validation)")
    ex.add_argument("--force", action="store_true", help="replace the output file(s) when they exist")
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
    """``rolypoly eval model``: one table with the baselines and each model's three conditions."""
    import time

    from rolypoly.metrics import PROTOCOL, baselines, eval_takes
    from rolypoly.model.evaluate import CONDITIONS, evaluate, model_from_path, predictor_from_model
    from rolypoly.report import Table, emit
    from rolypoly.score.gmd import load_gmd

    import torch
    if args.threads < 1:
        from rolypoly.errors import ConfigError
        raise ConfigError(f"--threads {args.threads}: must be >= 1")
    torch.set_num_threads(args.threads)
    paths = list(args.model or [str(cfg.engine.model_path)])
    loaded, modules = [], {}
    for path in paths:  # load all first (once each): a bad file fails before minutes of evaluation
        module, desc, block, inc = model_from_path(path)
        loaded.append((path, predictor_from_model(module), desc, block, (module, desc, block) if inc else None))
        modules[path] = (module, block, inc)
    takes = load_gmd(cfg, grid="16", show_progress=False)
    test = eval_takes(takes, args.split)
    table = Table(f"GMD {args.split}: timing and velocity MAE, velocity distribution", key="results", columns=
                  ["predictor", "condition", "hits", "timing MAE (ms)", "velocity MAE",
                   "velocity histogram intersection", "mean velocity"])
    for b in baselines(takes.split("train"), test):
        table.add(b["predictor"], "baseline", b["hits"], b["timing_ms"], b["velocity"], None, None)
    results, notes = {}, []
    for path, predict, desc, block, stepper in loaded:
        t0 = time.perf_counter()
        res = evaluate(predict, test, block, stepper=stepper[0] if stepper else None)
        seconds = time.perf_counter() - t0
        results[path] = res
        for c in CONDITIONS:
            table.add(f"model {Path(path).name}", c, res[c]["hits"], res[c]["timing_ms"], res[c]["velocity"],
                      res[c]["velocity_hist_intersection"], res[c]["mean_velocity"])
        how = (f"incremental, receptive field {block} rows (score encoded once, one step per row)" if stepper
               else f"window {block} rows")
        notes.append(f"model: {desc}; {how}; evaluated in {seconds:.0f} s")
    first = results[paths[0]][CONDITIONS[0]]
    table.notes.append(PROTOCOL)
    table.notes.append(f"GMD {args.split} real velocities: mean {first['real_mean_velocity']:.1f}; histogram intersection "
                       "over 8-step velocity bins on the hits (1 = the same distribution)")
    table.notes.extend(notes)
    tables = [table]
    for path in paths:
        res = results[path]
        name = Path(path).name
        drum = Table(f"per drum ({name}): timing MAE (ms) / velocity MAE / mean velocity",
                     key=f"per_drum_model_{paths.index(path) + 1}",
                     columns=["drum", "hits"] + [f"{c} timing" for c in CONDITIONS]
                     + [f"{c} velocity" for c in CONDITIONS] + ["teacher-forced mean velocity", "free-running mean velocity", "GMD mean velocity"])
        for i, d in enumerate(res[CONDITIONS[0]]["per_drum"]):
            drum.add(d["drum"], d["hits"], *[res[c]["per_drum"][i]["timing_ms"] for c in CONDITIONS],
                     *[res[c]["per_drum"][i]["velocity"] for c in CONDITIONS],
                     d["mean_velocity"], res["free-running"]["per_drum"][i]["mean_velocity"], d["real_mean_velocity"])
        if getattr(args, "per_drum", False) or args.json:
            tables.append(drum)
    # The bundled demo score (velocities written per note): does the model push them to the top?
    from rolypoly.config import REPO_DIR
    from rolypoly.model.evaluate import score_velocities
    from rolypoly.score.midi import read_score
    demo_path = REPO_DIR / "data" / "demo.mid"
    if demo_path.is_file():
        demo = read_score(demo_path)
        vt = Table(f"{demo_path.name} played alone (free-running): written vs played velocity", key="demo_velocities",
                   columns=["model", "drum", "rows", "hits", "written", "played", "played max"])
        for path in paths:
            module, window, inc = modules[path]
            for r in score_velocities(module, inc, window, demo):
                vt.add(Path(path).name, r["drum"], r["rows"], r["hits"], r["written"], r["played"], r["played_max"])
        tables.append(vt)
    extra = None
    if args.json:
        extra = {"models": [d for _, _, d, _, _ in loaded], "protocol": PROTOCOL,
                 "summary": {Path(p).name: {c: {k: results[p][c][k] for k in
                                                ("timing_ms", "velocity", "velocity_hist_intersection", "mean_velocity")}
                                            for c in CONDITIONS} for p in paths}}
        extra["model"] = extra["models"][0]
    emit(tables, as_json=args.json, extra=extra)
    return 0


def eval_baselines(args, cfg) -> int:
    from rolypoly.metrics import PROTOCOL, baselines, eval_takes
    from rolypoly.report import Table, emit
    from rolypoly.score.gmd import load_gmd
    takes = load_gmd(cfg, grid="16")
    test = eval_takes(takes)
    t = Table("GMD test baselines", key="baselines", columns=["predictor", "rows", "hits", "timing MAE (ms)", "velocity MAE"])
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
    from rolypoly.io import check_output
    t = Table("export", ["written", "version", "bytes"])
    curve_tables = []
    for target in (args.swing, args.output, args.ckpt_out):
        if target:  # a shipped model (models/) or any existing file is replaced only with --force
            check_output(target, args.force, what="export target")
    if args.swing:
        p = write_swing(args.swing)
        rt = load_runtime(p)
        t.add(str(p), rt.version, p.stat().st_size)
    else:
        if not args.checkpoint or not args.output:
            raise ConfigError("rolypoly export needs CHECKPOINT OUTPUT (or --swing OUT)")
        from rolypoly.free.train import export_checkpoint, is_event_checkpoint
        if is_event_checkpoint(args.checkpoint):  # the free-mode event model
            p, meta = export_checkpoint(args.checkpoint, args.output)
            t.add(str(p), meta.get("version", "?"), p.stat().st_size)
            emit(t, as_json=args.json)
            return 0
        from rolypoly.model.transformer import average_checkpoints, load_checkpoint, save_checkpoint
        if args.average:
            model, meta = average_checkpoints([args.checkpoint, *args.average])
        else:
            model, meta = load_checkpoint(args.checkpoint)
        if args.offset_scale is not None:
            import numpy as np

            from rolypoly.errors import ModelError
            from rolypoly.model.transformer import offset_scales, scale_offsets
            try:
                a = [float(x) for x in str(args.offset_scale).split(",")]
            except ValueError:
                raise ModelError(f"--offset-scale {args.offset_scale!r}: one number or 9 comma-separated") from None
            a = offset_scales(a)
            scale_offsets(model, a)
            total = a * offset_scales(meta.get("offset_scale", 1.0) or 1.0)
            # one number while every drum shares it (the meta older models and tools read)
            meta = dict(meta, offset_scale=float(total[0]) if np.all(total == total[0]) else total.tolist())
        if args.velocity_curve:
            import sys

            from rolypoly.model.velocity import fit_velocity_curve
            from rolypoly.score.gmd import load_gmd
            takes = load_gmd(cfg, grid="16", show_progress=False)
            from rolypoly.metrics import eval_takes
            fit = fit_velocity_curve(model, takes.split("train"), eval_takes(takes, "validation"),
                                     log=lambda m: print(m, file=sys.stderr, flush=True))
            meta = dict(meta, velocity_curve={k: v for k, v in fit.items() if k != "validation"})
            vt = Table("velocity curve: blends on GMD validation (teacher-forced)",
                       ["alpha", "velocity MAE", "velocity histogram intersection", "chosen"], key="velocity_curve")
            for r in fit["validation"]:
                vt.add(r["alpha"], r["velocity_mae"], r["hist_intersection"], r["alpha"] == fit["alpha"])
            vt.notes.append(f"chosen: the largest blend within {fit['tolerance']} velocity MAE of the uncalibrated "
                            f"model; map fitted on {fit['fitted_on']}")
            curve_tables.append(vt)
        p = export_torchscript(model, meta, args.output)
        t.add(str(p), meta.get("version", "?"), p.stat().st_size)
        if args.ckpt_out:
            keep = {k: v for k, v in meta.items() if k != "history"}
            save_checkpoint(model, keep, args.ckpt_out)
            t.add(str(args.ckpt_out), meta.get("version", "?"), Path(args.ckpt_out).stat().st_size)
    emit([*curve_tables, t], as_json=args.json)
    return 0
