"""The nine drum classes and the General MIDI pitch map (the Magenta reduction).

Examples
--------
>>> DRUMS[0], PITCH_TO_DRUM[38], OUTPUT_PITCHES[DRUM_INDEX["ride"]]
('kick', 1, 51)
"""
from __future__ import annotations

from rolypoly.errors import RolypolyError

#: Class names in model order.
DRUMS = ("kick", "snare", "hihat", "openhat", "lowtom", "midtom", "hightom", "crash", "ride")
#: Longer names for tables.
DRUM_LABELS = ("kick", "snare", "closed hi-hat", "open hi-hat", "low tom", "mid tom", "high tom",
               "crash", "ride")
N_DRUMS = len(DRUMS)
DRUM_INDEX = {name: i for i, name in enumerate(DRUMS)}
# Accepted spellings beyond the short names.
_ALIASES = {"bd": 0, "bass": 0, "sd": 1, "closedhat": 2, "closed_hihat": 2, "hh": 2, "chh": 2,
            "ohh": 3, "open_hihat": 3, "openhihat": 3, "lt": 4, "mt": 5, "ht": 6, "cymbal": 7, "rd": 8}

_GROUPS = ((35, 36), (37, 38, 40), (42, 22, 44), (46, 26), (43, 58), (47, 45), (50, 48),
           (49, 52, 55, 57), (51, 53, 59))
#: MIDI pitch -> drum class for every mapped pitch.
PITCH_TO_DRUM = {p: d for d, group in enumerate(_GROUPS) for p in group}
#: The pitch written for each class.
OUTPUT_PITCHES = (36, 38, 42, 46, 43, 45, 48, 49, 51)


def drum_index(name: str | int) -> int:
    """Class index of a drum name (``"kick"``, ``"snare"``, ``"hihat"``, ...) or an index.

    Raises
    ------
    RolypolyError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, int) and 0 <= name < N_DRUMS:
        return name
    key = str(name).strip().lower().replace("-", "").replace(" ", "")
    if key.isdigit() and int(key) < N_DRUMS:
        return int(key)
    if key in DRUM_INDEX:
        return DRUM_INDEX[key]
    if key in _ALIASES:
        return _ALIASES[key]
    raise RolypolyError(f"unknown drum {name!r}; known drums: {', '.join(DRUMS)}")
