"""The services refuse to start on a schema that is not at their head revision (SQLite, MariaDB)."""

from __future__ import annotations

import pytest

from auth_svc.config import AuthConfig
from auth_svc.migrations import AUTH_MIGRATIONS
from auth_svc.server import build_server as build_auth_server
from authgate_common.migrations import SchemaNotCurrent
from authgate_common.tokens import TokenSettings
from profile_svc.server import build_server as build_profile_server
from tests.fixtures.profile_fixtures import profile_test_config
from tests.token_factory import TokenFactory

# Migrations start from a database without tables (on MySQL too: see database_url).
pytestmark = pytest.mark.empty_database


def test_auth_service_refuses_a_database_migrated_down_to_base(auth_config: AuthConfig) -> None:
    AUTH_MIGRATIONS.downgrade(auth_config.database_url, "base")

    with pytest.raises(SchemaNotCurrent, match="make migrate"):
        build_auth_server(auth_config)


def test_profile_service_refuses_an_empty_database(
    database_url: str, token_settings: TokenSettings, token_factory: TokenFactory
) -> None:
    config = profile_test_config(database_url, token_settings)

    with pytest.raises(SchemaNotCurrent, match="make migrate"):
        build_profile_server(config, jwks_source=token_factory.jwks_source())
