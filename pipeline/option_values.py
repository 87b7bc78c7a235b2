"""Parsers of option values shared by every command line (no Beam: the training jobs use
them too). Each raises ``OptionValueError``, whose message argparse shows as it is."""

from __future__ import annotations

import argparse
import math


class OptionValueError(argparse.ArgumentTypeError, ValueError):
    """An option's value that does not parse (``--guidance nan``, ``--steps x``); argparse
    shows an ``ArgumentTypeError``'s own message, and callers may catch a ``ValueError``."""


def parse_size(text: str) -> tuple[int, int]:
    """``"64x128"`` -> ``(64, 128)`` (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must be HxW, e.g. 512x1024, got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no): Flex Templates pass booleans as values."""
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise OptionValueError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def parse_finite(text: str) -> float:
    """A finite number: ``nan`` and ``inf`` parse as floats but would render other images
    and write ``NaN`` (not JSON) into every sample's json."""
    try:
        value = float(text)
    except ValueError:
        raise OptionValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise OptionValueError(f"expected a finite number, got {text!r}")
    return value


def parse_rate(text: str) -> float:
    """A fraction in [0, 1]."""
    value = parse_finite(text)
    if not 0.0 <= value <= 1.0:
        raise OptionValueError(f"expected a fraction between 0 and 1, got {text!r}")
    return value
