"""rolypoly: an expressive, introspective AI drum machine.

Data path: score -> features -> model -> schedule -> synth -> audio.
Learning path: take -> finetune -> model version.
"""
__version__ = "0.1.0"

from rolypoly.errors import RolypolyError  # noqa: F401
