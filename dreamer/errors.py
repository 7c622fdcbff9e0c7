"""Typed errors. Every error a user can cause derives from `DreamerError`; the CLI prints its message
and exits non-zero instead of showing a traceback."""

from __future__ import annotations


class DreamerError(Exception):
    """Base class of every expected, user-facing failure."""


class ConfigError(DreamerError, ValueError):
    """A configuration value or key is invalid."""


def require(condition: bool, message: str) -> None:
    """Raise `ConfigError(message)` unless `condition` holds (used by config `__post_init__` checks)."""
    if not condition:
        raise ConfigError(message)
