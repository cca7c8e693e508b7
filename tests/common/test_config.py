"""Configuration is read once, typed, and a bad value fails with the variable's name."""

from __future__ import annotations

import pytest

from authgate_common.config import ConfigError, Env, flag
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
