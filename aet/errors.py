"""Exceptions a user may want to catch.

All derive from :class:`ValueError` (bad input) or :class:`OSError` (files), so code that
catches the built-in types keeps working.
"""

from __future__ import annotations


class AetError(Exception):
    """Base class of every exception defined by :mod:`aet`."""


class MetadataError(AetError, ValueError):
    """Required metadata (pixel size, angles, ...) is missing or invalid."""


class UnknownFormatError(AetError, ValueError):
    """A file's extension or content matches no registered format."""


class CorruptFileError(AetError, OSError):
    """A file exists but cannot be parsed (truncated, corrupt or not the claimed format)."""


class MissingVariableError(AetError, KeyError):
    """A container (e.g. a MATLAB ``.mat`` file) lacks the expected variables."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class AngleUnitWarning(UserWarning):
    """Tilt angles look like radians (ten or more projections, all within ±π/2); aet reads
    degrees."""
