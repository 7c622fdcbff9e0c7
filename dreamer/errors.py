"""Typed errors. Every error a user can cause derives from `DreamerError`; the CLI prints its message
and exits non-zero instead of showing a traceback."""

from __future__ import annotations

from collections.abc import Mapping


class DreamerError(Exception):
    """Base class of every expected, user-facing failure."""


class ConfigError(DreamerError, ValueError):
    """A configuration value or key is invalid."""


def require(condition: bool, message: str) -> None:
    """Raise `ConfigError(message)` unless `condition` holds (used by config `__post_init__` checks)."""
    if not condition:
        raise ConfigError(message)


def require_in_range(config: object, section: str, bounds: Mapping[str, tuple[float, float]]) -> None:
    """Raise `ConfigError` unless every `config.<name>` of `bounds` lies in its `[low, high]` (None: unset)."""
    for name, (low, high) in bounds.items():
        value = getattr(config, name)
        require(
            value is None or low <= value <= high, f"{section}.{name} must be in [{low:,}, {high:,}], got {value!r}"
        )
