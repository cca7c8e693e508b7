"""Typed reading of configuration from the environment, with clear errors at start."""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Env:
    """Reads typed values from a mapping (os.environ by default)."""

    values: Mapping[builtins.str, builtins.str]

    @classmethod
    def from_os(cls) -> Env:
        return cls(dict(os.environ))

    def str(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = self.values.get(name, default).strip()
        if not value:
            raise ConfigError(f"{name} must not be empty")
        return value

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int = 0,
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        raw = self.values.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = "" if maximum is None else f" and at most {maximum}"
            raise ConfigError(f"{name} must be at least {minimum}{upper}, got {value}")
        return value

    def float(
        self, name: builtins.str, default: builtins.float, *, minimum: builtins.float = 0.0
    ) -> builtins.float:
        raw = self.values.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not value >= minimum:  # also rejects NaN
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self.values.get(name)
        if raw is None or not raw.strip():
            return default
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def path(self, name: builtins.str, default: builtins.str) -> Path:
        return Path(self.str(name, default))

    def csv(self, name: builtins.str, default: builtins.str) -> tuple[builtins.str, ...]:
        items = tuple(part.strip() for part in self.str(name, default).split(",") if part.strip())
        if not items:
            raise ConfigError(f"{name} must list at least one value")
        return items


def port(env: Env, name: str, default: int) -> int:
    """A TCP port; 0 asks the OS for a free one (used by tests)."""
    return env.int(name, default, minimum=0, maximum=65535)
