"""The one exception family of rolypoly.

Every error a user can cause (a bad file, a bad value, a missing device) is a
:class:`RolypolyError` whose message names the file, field or message at fault.
The CLI prints it on one line and exits with code 2; ``--debug`` shows the
traceback.  Anything else escaping is a bug.
"""
from __future__ import annotations


class RolypolyError(Exception):
    """Base class: a clear, one-line, user-facing problem."""

    exit_code = 2


class ConfigError(RolypolyError):
    """A configuration key or override is unknown or has a bad value."""


class ScoreError(RolypolyError):
    """A MIDI score is missing, unreadable or unusable."""


class DataError(RolypolyError):
    """Data is missing or malformed: the training corpus (GMD), the onsets corpus, or what is scored."""


class ModelError(RolypolyError):
    """A checkpoint or TorchScript model is missing, corrupt or of the wrong contract."""


class SynthError(RolypolyError):
    """A drum patch, kit or preset is invalid."""


class PresetError(SynthError):
    """A ``.mtpreset`` file does not parse (the message names the line)."""


class AudioError(RolypolyError):
    """An audio file or device problem."""


class EngineError(RolypolyError):
    """A message or attribute of the rolypoly object is invalid."""


class TakeError(RolypolyError):
    """A take record is missing, incomplete or does not match."""


class IntrospectError(RolypolyError):
    """A pattern query or pattern database problem."""


class OscError(RolypolyError):
    """An OSC message is malformed or refers to something unknown."""


class OutputError(RolypolyError):
    """An output cannot be written: it exists (and ``--force`` was not given), its folder
    cannot be created, or its name has the wrong extension."""


class BoxError(RolypolyError):
    """A drum-machine (``rolypoly box``) action, script or project file that does not make sense."""


class MidiError(RolypolyError):
    """A MIDI port cannot be opened or a MIDI message is not understood."""
