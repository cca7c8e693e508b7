"""Configuration is read once, typed, and a bad value fails with the variable's name."""

from __future__ import annotations

import pytest

from authgate_common.config import (
    ConfigError,
    Env,
    SettingsTable,
    flag,
    number,
    optional_port,
    text,
    whole,
)
from authgate_common.tokens import TokenSettings


def test_defaults_apply_when_variables_are_unset() -> None:
    settings = TokenSettings.from_env(Env({}))
    assert settings.algorithms == ("RS256",)
    assert settings.issuer == "authgate"


def test_whole_number_that_is_not_a_number_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="JWT_LEEWAY_SECONDS must be a whole number"):
        TokenSettings.from_env(Env({"JWT_LEEWAY_SECONDS": "lots"}))


def test_number_out_of_range_names_the_variable_and_bound() -> None:
    with pytest.raises(ConfigError, match="JWT_LEEWAY_SECONDS must be at least 0 and at most 300"):
        TokenSettings.from_env(Env({"JWT_LEEWAY_SECONDS": "301"}))


@pytest.mark.parametrize("algorithm", ["HS256", "none", "ES256"])
def test_algorithms_other_than_rsa_are_refused_at_start(algorithm: str) -> None:
    with pytest.raises(ConfigError, match="JWT_ALGORITHMS"):
        TokenSettings.from_env(Env({"JWT_ALGORITHMS": algorithm}))


def test_boolean_accepts_common_spellings_and_rejects_others() -> None:
    assert flag("X", False, "a test flag").read(Env({"X": "yes"})) is True
    assert flag("X", True, "a test flag").read(Env({"X": "0"})) is False
    with pytest.raises(ConfigError, match="X must be true or false"):
        flag("X", True, "a test flag").read(Env({"X": "maybe"}))


def test_a_blank_number_means_the_default_and_blank_text_is_refused() -> None:
    assert whole("X_COUNT", 7, "a count").read(Env({"X_COUNT": "  "})) == 7
    with pytest.raises(ConfigError, match=r"^X_NAME must not be empty$"):
        text("X_NAME", "n", "a name").read(Env({"X_NAME": "  "}))


@pytest.mark.parametrize("value", ["nan", "-0.5", "inf"])
def test_a_number_outside_its_bounds_is_refused_with_them(value: str) -> None:
    setting = number("X_SECONDS", 1.0, "a delay", minimum=0.0, maximum=60.0)
    with pytest.raises(ConfigError, match=r"^X_SECONDS must be at least 0 and at most 60, got"):
        setting.read(Env({"X_SECONDS": value}))


def test_a_port_may_be_switched_off() -> None:
    setting = optional_port("X_METRICS_PORT", 9100, "a metrics port")
    assert setting.read(Env({})) == 9100
    assert setting.read(Env({"X_METRICS_PORT": "OFF"})) is None
    with pytest.raises(ConfigError, match="X_METRICS_PORT must be at least 0 and at most 65535"):
        setting.read(Env({"X_METRICS_PORT": "65536"}))


def test_check_holds_a_value_made_in_code_to_the_same_bounds() -> None:
    setting = whole("X_WORKERS", 2, "workers", minimum=1, maximum=8)
    assert setting.check(8) == 8
    with pytest.raises(ConfigError, match=r"^X_WORKERS must be at least 1 and at most 8, got 9$"):
        setting.check(9)


def test_a_table_validates_every_row_and_names_the_first_bad_one() -> None:
    table = SettingsTable.of(
        "x", [whole("X_A", 1, "a"), flag("X_B", True, "b"), whole("X_C", 1, "c")]
    )
    table.validate(Env({"X_A": "3"}))
    with pytest.raises(ConfigError, match=r"^X_B must be true or false"):
        table.validate(Env({"X_B": "perhaps", "X_C": "none"}))
