"""docs/configuration.md is generated from the settings tables and must not drift from them."""

from __future__ import annotations

from typing import Any

import pytest

from authgate_common.config import Env, Setting, SettingsTable, whole
from tools import gen_config_doc

REMOVED = (
    # Settings no operator would turn: fixed now, and refused nowhere (simply not read).
    "JWT_MAX_TOKEN_BYTES",
    "GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS",
    "GRPC_KEEPALIVE_MIN_PING_INTERVAL_SECONDS",
)


def all_settings() -> list[Setting[Any]]:
    return [setting for table in gen_config_doc.TABLES for setting in table.settings]


def test_the_reference_is_what_the_tables_generate() -> None:
    written = gen_config_doc.DOC.read_text(encoding="utf-8")
    assert written == gen_config_doc.render(), "docs/configuration.md drifted: make config-doc"


def test_check_mode_fails_on_a_drifted_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(gen_config_doc.render().replace("`900`", "`600`"), encoding="utf-8")
    monkeypatch.setattr(gen_config_doc, "ROOT", tmp_path)
    monkeypatch.setattr(gen_config_doc, "DOC", stale)

    assert gen_config_doc.main(["--check"]) == 1
    assert "make config-doc" in capsys.readouterr().err
    assert gen_config_doc.main([]) == 0
    assert gen_config_doc.main(["--check"]) == 0


def test_every_variable_of_every_table_is_in_the_reference_with_a_meaning() -> None:
    reference = gen_config_doc.render()
    for setting in all_settings():
        assert setting.doc.strip(), setting.name
        assert setting.kind.strip(), setting.name
        assert f"| `{setting.name}` |" in reference


def test_a_variable_read_by_several_processes_is_one_declaration() -> None:
    by_name: dict[str, Setting[Any]] = {}
    for setting in all_settings():
        assert by_name.setdefault(setting.name, setting) is setting, setting.name


def test_two_declarations_of_one_name_are_refused() -> None:
    first = SettingsTable.of("a", [whole("X_COUNT", 1, "one")])
    second = SettingsTable.of("b", [whole("X_COUNT", 2, "another")])
    with pytest.raises(ValueError, match="X_COUNT is declared twice"):
        gen_config_doc.render([first, second])
    with pytest.raises(ValueError, match="listed twice: X_COUNT"):
        SettingsTable.of("a", [whole("X_COUNT", 1, "one"), whole("X_COUNT", 1, "one")])


def test_removed_settings_are_gone_from_tables_and_reference() -> None:
    names = {setting.name for setting in all_settings()}
    reference = gen_config_doc.render()
    for name in REMOVED:
        assert name not in names
        assert name not in reference


def test_every_default_is_within_its_own_bounds() -> None:
    for setting in all_settings():
        assert setting.read(Env({})) == setting.default
        setting.check(setting.default)
