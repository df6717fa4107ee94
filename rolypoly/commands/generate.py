"""``rolypoly generate``: continue, fill or freely improvise a score with the event model."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser(
        "generate", parents=[common], help="generate a drum performance with the free-mode event model",
        description="Continue a score after its end (continue), improvise in the bars it leaves empty and every "
                    "N-th bar (fill), or keep only its first bar and follow only the model (free); the performance "
                    "model then gives every row its velocities and micro-timing. Writes a MIDI file (and a WAV with "
                    "--wav) atomically and never over an existing file unless --force. Examples: "
                    "rolypoly generate data/demo.mid --bars 8 --mode continue -o out.mid ; "
                    "rolypoly generate --mode free --bars 16 --density 0.8 -o free.mid --wav free.wav")
    p.add_argument("score", nargs="?", help="MIDI score to start from (optional in free mode)")
    p.add_argument("--bars", type=int, default=None, help="bars to add after the score (default generate.bars)")
    p.add_argument("--mode", default=None, help="continue | fill | free (default continue)")
    p.add_argument("-o", "--output", required=True, help="MIDI file to write")
    p.add_argument("--wav", default=None, help="also render the performance with the kit to this WAV file")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default generate.temperature)")
    p.add_argument("--density", type=float, default=None, help="density knob 0..1 (default: follow the score)")
    p.add_argument("--complexity", type=float, default=None, help="complexity knob 0..1 (default: follow the score)")
    p.add_argument("--generate-vels", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="window on drum probabilities (default generate.generate_vels)")
    p.add_argument("--filter-hits", default=None, choices=("score_notes", "score_notes_and_vels"),
                   help="velocities from the performance model (score_notes) or as generated "
                        "(score_notes_and_vels); default engine.filter_hits when it is one of these")
    p.add_argument("--fill-every", type=int, default=None, help="fill mode: a fill every N bars")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampling (default generate.seed)")
    p.add_argument("--events-model", default=None, help="event model (default generate.events_model)")
    p.add_argument("--model", default=None, help="performance model (default engine.model_path)")
    p.add_argument("--no-perform", action="store_true", help="write the generated score as is (no performance model)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


def _pick(arg, default):
    return default if arg is None else arg


def run(args, cfg) -> int:
    import time

    from rolypoly.errors import RolypolyError
    from rolypoly.free.generate import generate, head_temperatures, perform
    from rolypoly.free.runtime import load_events
    from rolypoly.report import Table, emit
    from rolypoly.score.midi import read_score

    g = cfg.generate
    mode = str(_pick(args.mode, "continue" if str(g.mode) == "off" else g.mode))
    from rolypoly.io import check_output
    outputs = [check_output(args.output, args.force, (".mid", ".midi"), "MIDI output")]
    if args.wav:
        outputs.append(check_output(args.wav, args.force, (".wav",), "audio output"))
    if args.score is None and mode != "free":
        raise RolypolyError(f"mode {mode} needs a SCORE.mid (only free mode starts from nothing)")
    t0 = time.perf_counter()
    score = read_score(args.score, merge_tolerance_ms=float(cfg.data.merge_tolerance_ms)) if args.score else None
    runtime = load_events(_pick(args.events_model, g.events_model))
    seed = _pick(args.seed, g.seed)
    gen = generate(runtime, score, mode, bars=int(_pick(args.bars, g.bars)),
                   temperature=float(_pick(args.temperature, g.temperature)),
                   generate_vels=tuple(float(v) for v in _pick(args.generate_vels, g.generate_vels)),
                   density=_pick(args.density, g.density), complexity=_pick(args.complexity, g.complexity),
                   fill_every=int(_pick(args.fill_every, g.fill_every)), seed=None if seed is None else int(seed),
                   **head_temperatures(g))
    played = gen.score
    perf_desc = "none (generated score as written)"
    if not args.no_perform:
        from rolypoly.model.export import load_runtime
        perf = load_runtime(_pick(args.model, cfg.engine.model_path))
        filt = args.filter_hits or (str(cfg.engine.filter_hits) if str(cfg.engine.filter_hits) != "none"
                                    else "score_notes")
        played = perform(gen.score, perf, filter_hits=filt)
        perf_desc = f"{perf.version} ({filt})"
    if played.n_rows == 0:
        raise RolypolyError("nothing was generated (try more --bars or a higher --density)")
    played.write_midi(outputs[0])
    if args.wav:
        from rolypoly.io import write_wav
        from rolypoly.synth import load_kit, render
        sr = int(cfg.audio.sample_rate)
        hits = [(max(0.0, t), d, v) for t, d, v in played.hit_list()]  # a first hit played early starts at 0
        audio = render(hits, load_kit(cfg.synth.kit), sr=sr, polyphony=int(cfg.synth.polyphony),
                       steal_fade_ms=float(cfg.synth.steal_fade_ms))
        write_wav(outputs[1], audio, sr)
    t = Table("generate", ["mode", "score_rows_kept", "generated_rows", "first_generated_bar", "bars", "events_model",
                           "performance_model", "written", "seconds"])
    t.add(mode, gen.n_score_rows, int(gen.generated.sum()), gen.first_bar, int(played.bar[-1]) + 1, runtime.version,
          perf_desc, ", ".join(str(o) for o in outputs), round(time.perf_counter() - t0, 2))
    emit(t, as_json=args.json)
    return 0
