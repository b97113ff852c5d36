"""Errors the library raises on purpose. The CLI turns each into a click.ClickException."""
from __future__ import annotations

from converters.common import InputFormatError

__all__ = ["HitlError", "ConfigError", "InputFormatError", "NothingToDo"]


class HitlError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(HitlError):
    """A configuration file or setting is invalid."""


class NothingToDo(HitlError):
    """The command found nothing to work on (for example no candidates yet)."""
