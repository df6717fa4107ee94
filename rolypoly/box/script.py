"""Replaying keystrokes in the box without a terminal: ``rolypoly box --headless --script FILE``.

A script is the box's keys, whitespace-separated, in textual's key names (``x``,
``space``, ``right``, ``shift+right``, ``f2``, ``ctrl+s``, ``E``...), one or more a line;
``#`` starts a comment.  Lines starting with ``:`` are directives:

``:save FILE``          save the project (refuses to replace a file)
``:midi FILE``          export the current pattern's chain as MIDI
``:wav FILE``           render the chain through the engine to a WAV file
``:screenshot FILE``    save the screen (``.svg``; ``.png`` converted with cairosvg)
``:seed N``             seed the generate keys (same script, same answers)
``:repeat N KEY...``    press the keys N times

The run reports the final state (every non-empty pattern's grid, settings) as a table
or with ``--json``.

Examples
--------
>>> parse_script("x right x  # two beats\\n:repeat 2 down")
[('key', 'x'), ('key', 'right'), ('key', 'x'), ('key', 'down'), ('key', 'down')]
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from rolypoly.box.model import BoxError

DIRECTIVES = ("save", "midi", "wav", "screenshot", "seed", "repeat")


def parse_script(text: str, where: str = "<script>") -> list[tuple[str, str]]:
    """The script's steps: ``("key", name)`` or ``(directive, argument)``."""
    steps = []
    for no, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip() if not line.strip().startswith(":") else line.strip()
        if not line:
            continue
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts or parts[0] not in DIRECTIVES:
                raise BoxError(f"{where}:{no}: unknown directive {line.split()[0]!r}; "
                               f"directives: {', '.join(':' + d for d in DIRECTIVES)}")
            name, args = parts[0], parts[1:]
            if name == "repeat":
                if len(args) < 2 or not args[0].isdigit():
                    raise BoxError(f"{where}:{no}: :repeat needs a count and keys")
                steps += [("key", k) for _ in range(int(args[0])) for k in args[1:]]
                continue
            if len(args) != 1:
                raise BoxError(f"{where}:{no}: :{name} needs one argument")
            if name == "seed" and not args[0].lstrip("-").isdigit():
                raise BoxError(f"{where}:{no}: :seed needs an integer")
            steps.append((name, args[0]))
        else:
            keys = line.split()
            bad = [k for k in keys if k.startswith(":")]
            if bad:
                raise BoxError(f"{where}:{no}: {bad[0]} inside a line of keys; a directive goes on its own line")
            steps += [("key", k) for k in keys]
    return steps


def svg_to_png(svg: str | Path, png: str | Path) -> Path:
    """Convert a textual screenshot to PNG (cairosvg)."""
    try:
        import cairosvg
    except ImportError:
        raise BoxError("PNG screenshots need cairosvg (pip install cairosvg)") from None
    from rolypoly.io import atomic_path
    # textual asks for Fira Code; name a monospace font cairo has, or the grid's columns drift
    text = Path(svg).read_text().replace("Fira Code, monospace", '"DejaVu Sans Mono", monospace')
    text = text.replace('font-family: "Fira Code";', 'font-family: "DejaVu Sans Mono";')
    with atomic_path(png) as tmp:
        cairosvg.svg2png(bytestring=text.encode(), write_to=str(tmp))
    return Path(png)


async def _run(app, steps, cfg, size, out_dir: Path):
    from rolypoly.box.project import export_midi, export_wav, save_project
    done = []
    async with app.run_test(headless=True, size=size) as pilot:
        await pilot.pause()
        for kind, arg in steps:
            if kind == "key":
                await pilot.press(arg)
                continue
            await pilot.pause()
            path = (out_dir / arg) if not Path(arg).is_absolute() else Path(arg)
            if kind == "save":
                save_project(app.box, path)
            elif kind == "midi":
                export_midi(app.box, path)
            elif kind == "wav":
                export_wav(app.box, cfg, path)
            elif kind == "seed":
                import numpy as np
                app._rng = np.random.default_rng(int(arg))
                continue
            elif kind == "screenshot":
                if path.suffix.lower() == ".png":
                    svg = path.with_suffix(".svg")
                    app.save_screenshot(filename=svg.name, path=str(svg.parent))
                    svg_to_png(svg, path)
                    svg.unlink()
                else:
                    app.save_screenshot(filename=path.name, path=str(path.parent))
            done.append((kind, str(path)))
        await pilot.pause()
    return done


def run_script(app, script: str | Path, cfg=None, size=(132, 32), out_dir=None) -> dict:
    """Press a script's keys in ``app`` (a :class:`~rolypoly.box.app.BoxApp`) headlessly; returns a summary."""
    path = Path(script)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BoxError(f"cannot read script {path}: {exc}") from None
    steps = parse_script(text, str(path))
    done = asyncio.run(_run(app, steps, cfg, size, Path(out_dir or ".")))
    return {"keys": sum(1 for k, _ in steps if k == "key"), "outputs": done, "message": app.message}
