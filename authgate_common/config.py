"""Settings declared once: each variable's name, type, default, bounds and meaning in one row.

Every process lists the settings it reads in a SettingsTable (auth_svc/config.py,
profile_svc/config.py, gateway/config.py; the shared ones in authgate_common/settings.py).
`Setting.read` parses the environment and fails with one line naming the variable;
`Setting.check` holds a value built in code (as tests do) to the same bounds; and
docs/configuration.md is generated from the tables (`make config-doc`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

if TYPE_CHECKING:
    from dataclasses import Field

    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")
# A rule on a parsed value: None when it holds, else what the value must be ("must be ...").
Rule = Callable[[T], str | None]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_OFF = frozenset({"off", "none", "disabled", "false"})


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Env:
    """The variables a process was started with (os.environ by default), read by settings."""

    values: Mapping[str, str]

    @classmethod
    def from_os(cls) -> Env:
        return cls(dict(os.environ))


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: how it is parsed, its default, its bounds and its meaning."""

    name: str
    default: T
    doc: str
    # How a value is written, for the reference ("whole number", "seconds", "true/false", ...).
    kind: str
    parse: Callable[[str], T]
    rule: Rule[T] | None = None
    # The bounds or allowed values as the reference states them.
    allowed: str = ""
    # The default as the reference states it, when it is not simply `default`.
    default_doc: str | None = None
    # A variable set to spaces is an error (text), not "use the default" (numbers, flags).
    blank_is_error: bool = False

    def read(self, env: Env) -> T:
        raw = env.values.get(self.name)
        if raw is None or not raw.strip():
            if raw is not None and self.blank_is_error:
                raise ConfigError(f"{self.name} must not be empty")
            return self.default
        try:
            value = self.parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{self.name} {exc}") from None
        return self.check(value)

    def check(self, value: T) -> T:
        """value, once within this setting's bounds; else a ConfigError naming the variable."""
        problem = None if self.rule is None else self.rule(value)
        if problem:
            raise ConfigError(f"{self.name} {problem}")
        return value

    @property
    def documented_default(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        value: Any = self.default
        if value is None:
            return "unset"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return ",".join(str(item) for item in value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


@dataclass(frozen=True)
class SettingsTable:
    """The settings one process reads, in the order the reference lists them."""

    process: str
    settings: tuple[Setting[Any], ...]

    def __post_init__(self) -> None:
        names = [setting.name for setting in self.settings]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{self.process}: settings listed twice: {', '.join(repeated)}")

    @classmethod
    def of(cls, process: str, *groups: Iterable[Setting[Any]]) -> SettingsTable:
        return cls(process, tuple(setting for group in groups for setting in group))

    def validate(self, env: Env) -> None:
        """Read every row once: the first bad value is a ConfigError naming its variable."""
        for setting in self.settings:
            setting.read(env)


# --- dataclasses whose fields are settings ---

_SETTING = "authgate.setting"


def from_setting(setting: Setting[T]) -> T:
    """A dataclass field that defaults to setting's default and that `read_settings` reads."""
    return field(default=setting.default, metadata={_SETTING: setting})


def read_settings(cls: type[D], env: Env, **others: Any) -> D:
    """The dataclass cls with each `from_setting` field read from env; others as given."""
    read = {
        item.name: item.metadata[_SETTING].read(env)
        for item in fields(cls)
        if _SETTING in item.metadata
    }
    return cls(**read, **others)


class ReadFromEnv:
    """Base of a settings dataclass that `read_settings` makes whole: `X.from_env(env)`."""

    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def from_env(cls, env: Env) -> Self:
        return read_settings(cls, env)


# --- the kinds of setting ---


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range_text(minimum: float | None, maximum: float | None, *, above: bool = False) -> str:
    low = None
    if minimum is not None:
        low = f"{'above' if above else 'at least'} {_number_text(minimum)}"
    high = None if maximum is None else f"at most {_number_text(maximum)}"
    return " and ".join(part for part in (low, high) if part)


def _parse_whole(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"must be a whole number, got {raw!r}") from None


def _whole_rule(minimum: int, maximum: int | None) -> Rule[int]:
    def rule(value: int) -> str | None:
        if value < minimum or (maximum is not None and value > maximum):
            return f"must be {_range_text(minimum, maximum)}, got {value}"
        return None

    return rule


def whole(
    name: str,
    default: int,
    doc: str,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    kind: str = "whole number",
) -> Setting[int]:
    return Setting(
        name,
        default,
        doc,
        kind,
        _parse_whole,
        _whole_rule(minimum, maximum),
        allowed=_range_text(minimum, maximum),
    )


def optional_whole(
    name: str, doc: str, *, default_doc: str, minimum: int = 0, maximum: int | None = None
) -> Setting[int | None]:
    """A whole number whose default (None) the reader works out, e.g. from another setting."""
    bounded = _whole_rule(minimum, maximum)

    def rule(value: int | None) -> str | None:
        return None if value is None else bounded(value)

    return Setting[int | None](
        name,
        None,
        doc,
        "whole number",
        _parse_whole,
        rule,
        allowed=_range_text(minimum, maximum),
        default_doc=default_doc,
    )


def port(name: str, default: int, doc: str) -> Setting[int]:
    """A TCP port; 0 asks the OS for a free one (used by tests)."""
    return whole(name, default, doc, minimum=0, maximum=65535, kind="port")


def optional_port(name: str, default: int, doc: str) -> Setting[int | None]:
    """A port, or `off` (None) for an endpoint that is then not served."""
    bounded = _whole_rule(0, 65535)

    def parse(raw: str) -> int | None:
        return None if raw.lower() in _OFF else _parse_whole(raw)

    def rule(value: int | None) -> str | None:
        return None if value is None else bounded(value)

    return Setting[int | None](
        name, default, doc, "port or off", parse, rule, allowed="0 to 65535, or off"
    )


def number(
    name: str,
    default: float,
    doc: str,
    *,
    minimum: float = 0.0,
    above: bool = False,
    maximum: float | None = None,
    kind: str = "seconds",
) -> Setting[float]:
    """A decimal number; `above` makes the minimum itself refused (a timeout of 0)."""
    allowed = _range_text(minimum, maximum, above=above)

    def parse(raw: str) -> float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None

    def rule(value: float) -> str | None:
        too_low = value <= minimum if above else value < minimum
        if math.isnan(value) or too_low or (maximum is not None and value > maximum):
            return f"must be {allowed}, got {value}"
        return None

    return Setting(name, default, doc, kind, parse, rule, allowed=allowed)


def flag(name: str, default: bool, doc: str) -> Setting[bool]:
    def parse(raw: str) -> bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"must be true or false, got {raw!r}")

    return Setting(name, default, doc, "true/false", parse)


def text(
    name: str,
    default: str,
    doc: str,
    *,
    choices: Collection[str] = (),
    upper: bool = False,
    rule: Rule[str] | None = None,
    allowed: str = "",
    kind: str = "text",
) -> Setting[str]:
    """Text that must not be blank; with `choices`, one of them (after `upper`, if set)."""
    one_of = ", ".join(sorted(choices))

    def parse(raw: str) -> str:
        return raw.upper() if upper else raw

    def check(value: str) -> str | None:
        if not value.strip():
            return "must not be empty"
        if choices and value not in choices:
            return f"must be one of {one_of}, got {value!r}"
        return None if rule is None else rule(value)

    return Setting(
        name, default, doc, kind, parse, check, allowed=allowed or one_of, blank_is_error=True
    )


def optional_text(name: str, doc: str, *, kind: str = "text") -> Setting[str | None]:
    def parse(raw: str) -> str | None:
        return raw

    return Setting[str | None](name, None, doc, kind, parse)


def path(name: str, default: str, doc: str) -> Setting[Path]:
    return Setting(name, Path(default), doc, "path", Path, blank_is_error=True)


def optional_path(name: str, doc: str) -> Setting[Path | None]:
    def parse(raw: str) -> Path | None:
        return Path(raw)

    return Setting[Path | None](name, None, doc, "path", parse)


def names(
    name: str, default: tuple[str, ...], doc: str, *, choices: Collection[str]
) -> Setting[tuple[str, ...]]:
    """A comma-separated list, each item one of choices."""

    def parse(raw: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def rule(value: tuple[str, ...]) -> str | None:
        if not value:
            return "must list at least one value"
        unknown = [item for item in value if item not in choices]
        if unknown:
            return f"must list only {', '.join(sorted(choices))}, got {', '.join(unknown)}"
        return None

    return Setting(
        name,
        default,
        doc,
        "comma-separated list",
        parse,
        rule,
        allowed=", ".join(sorted(choices)),
        blank_is_error=True,
    )
