"""The supertonic drum engine: Microtonic-style voices, kits, presets and rendering.

Function-first API::

    from rolypoly.synth import load_kit, render
    kit = load_kit(None)                                  # data/default_kit.toml
    audio = render([(0.0, 0, 110), (0.5, 1, 90)], kit)    # (n, 2) float32

The live engine uses :class:`BlockRenderer` (fixed blocks, no allocation per block).
"""
from rolypoly.synth.kit import DRUMS, Channel, Kit, default_kit_path, kit_path, read_kit, save_kit  # noqa: F401
from rolypoly.synth.mtpreset import read_mtpreset  # noqa: F401
from rolypoly.synth.patch import Patch, morph  # noqa: F401
from rolypoly.synth.render import BlockRenderer, render  # noqa: F401


def load_kit(path=None) -> Kit:
    """Any kit file: ``None`` = our default kit, a ``.toml`` kit, or a ``.mtpreset`` preset.

    Raises
    ------
    SynthError
        The file is missing, does not parse, or holds invalid values (message names it).
    """
    path = kit_path(path)
    if path.suffix.lower() == ".mtpreset":
        return read_mtpreset(path).kit
    return read_kit(path)
