"""``rolypoly train-take TAKE_DIR [w_v w_o w_g [w_r]]``: finetune on a recorded take."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("train-take", parents=[common], help="finetune the model on a recorded take",
                       description="Finetune the model a take was played with on that take and "
                                   "write a new model version under models_dir/versions/. Weights: w_v w_o w_g "
                                   "[w_r] (defaults from finetune.*). Example: rolypoly train-take "
                                   "takes/20261122-101500 1 1 1 0.1")
    p.add_argument("take", help="a take folder, or a take's name under takes_dir (rolypoly takes list)")
    p.add_argument("weights", nargs="*", help="w_v w_o w_g [w_r]")
    p.add_argument("--model", default=None, help="TorchScript model to start from (default: the take's model)")
    p.set_defaults(func=run)


def run(args, cfg) -> int:
    import sys

    from tqdm.auto import tqdm

    from rolypoly.learn.finetune import parse_weights, train_after_take
    from rolypoly.report import Table, emit
    from rolypoly.commands.live import resolve_take
    weights = parse_weights(args.weights, cfg.finetune)
    args.take = str(resolve_take(cfg, args.take))
    bar = tqdm(total=int(cfg.finetune.epochs), desc="finetune", disable=not sys.stderr.isatty(), leave=False)

    def progress(text):
        if text.startswith("finetune epoch"):
            bar.update(1)
            bar.set_postfix_str(text.split(": ", 1)[1][:60])

    version = train_after_take(cfg, args.take, base_model=args.model, weights=weights, on_progress=progress)
    bar.close()
    t = Table(f"finetune on {args.take}", ["epoch", "loss", "r", "vel", "off", "g"], key="losses")
    for row in version.losses:
        t.add(row["epoch"], row["loss"], row["r"], row["vel"], row["off"], row["g"])
    t.notes.append(f"weights {weights}; {version.seconds:.2f} s; rejected steps {version.rejected_steps}")
    t.notes.append(f"new model version: {version.path} (load it with: load {version.torchscript})")
    emit(t, as_json=args.json, extra={"version_path": str(version.path), "model_path": str(version.torchscript),
                                      "weights": weights, "seconds": version.seconds})
    return 0
