"""The three real processes, started the way `make run` starts them, on SQLite and on MariaDB.

The stack signs with a key the tests also hold (`RunningStack.signing_key`), so they can
mint hostile tokens that carry a valid signature. Rate limits are off: these tests send
many requests from 127.0.0.1; tests of the limits switch them on in a stack of their own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import sqlalchemy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.tokens import TokenSettings
from devstack.launcher import Stack, StackSettings
from profile_svc.migrations import PROFILE_MIGRATIONS
from tests.conftest import temporary_mysql_database

CHEAP_ARGON2 = {
    "AUTH_ARGON2_TIME_COST": "5",
    "AUTH_ARGON2_MEMORY_KIB": "7168",
    "AUTH_ARGON2_PARALLELISM": "1",
    # OWASP's least argon2id cost still takes milliseconds: a test's burst of 50 logins
    # waits for a hash slot instead of meeting the 2 s bound meant for real floods.
    "AUTH_HASH_QUEUE_TIMEOUT_SECONDS": "30",
}
TABLES = ("users", "refresh_tokens", "profiles")
TOKEN_SETTINGS = TokenSettings(issuer="authgate-e2e", audience="authgate-e2e-api")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningStack:
    stack: Stack
    url: str
    auth_target: str
    profile_target: str
    auth_database_url: str
    profile_database_url: str
    log_dir: Path
    signing_key: rsa.RSAPrivateKey
    token_settings: TokenSettings = TOKEN_SETTINGS
    # One engine per database for the whole module: connecting anew costs ~0.1 s on MySQL.
    _engines: dict[str, sqlalchemy.Engine] = field(default_factory=dict, repr=False)

    def post(self, path: str, body: object, **kwargs: object) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, timeout=10, **kwargs)  # type: ignore[arg-type]

    def engine(self, url: str) -> sqlalchemy.Engine:
        return self._engines.get(url) or self._engines.setdefault(
            url, sqlalchemy.create_engine(url)
        )

    def row_counts(self) -> dict[str, int]:
        """Rows in every table of both services: what a rejected request must leave unchanged."""
        counts: dict[str, int] = {}
        for url in {self.auth_database_url, self.profile_database_url}:
            with self.engine(url).connect() as connection:
                present = set(sqlalchemy.inspect(connection).get_table_names())
                for table in TABLES:
                    if table in present:
                        counts[table] = connection.execute(
                            sqlalchemy.text(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
                        ).scalar_one()
        return counts

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log"))
        )


def install_signing_key(keys_dir: Path, pem: bytes) -> rsa.RSAPrivateKey:
    """Put a PEM key where auth_svc looks for its keys (0700 folder, 0600 file), parsed."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    key_file = keys_dir / "e2e.pem"
    key_file.write_bytes(pem)
    os.chmod(key_file, 0o600)
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def running_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, auth_key_pem: bytes
) -> Iterator[RunningStack]:
    state = tmp_path_factory.mktemp("stack")
    signing_key = install_signing_key(state / "keys", auth_key_pem)
    with ExitStack() as cleanup:
        if request.param == "mysql":
            server: str = request.getfixturevalue("mysql_server_url")
            auth_db = cleanup.enter_context(temporary_mysql_database(server, "e2e_auth"))
            profile_db = cleanup.enter_context(temporary_mysql_database(server, "e2e_profile"))
            # As `make migrate` does; the stack migrates only SQLite files itself.
            AUTH_MIGRATIONS.upgrade(auth_db)
            PROFILE_MIGRATIONS.upgrade(profile_db)
        else:
            auth_db = f"sqlite:///{state / 'auth.db'}"
            profile_db = f"sqlite:///{state / 'profile.db'}"
        settings = StackSettings(
            state_dir=state,
            gateway_port=free_port(),
            auth_port=free_port(),
            profile_port=free_port(),
            auth_database_url=auth_db,
            profile_database_url=profile_db,
            extra_env={
                **CHEAP_ARGON2,
                "JWT_ISSUER": TOKEN_SETTINGS.issuer,
                "JWT_AUDIENCE": TOKEN_SETTINGS.audience,
                "GATEWAY_RATE_LIMITS_ENABLED": "false",
            },
        )
        stack = Stack(settings, log_dir=state / "logs")
        stack.start(timeout=60)
        cleanup.callback(stack.stop)
        running = RunningStack(
            stack=stack,
            url=settings.gateway_url,
            auth_target=f"127.0.0.1:{settings.auth_port}",
            profile_target=f"127.0.0.1:{settings.profile_port}",
            auth_database_url=auth_db,
            profile_database_url=profile_db,
            log_dir=state / "logs",
            signing_key=signing_key,
        )
        cleanup.callback(running.close)
        yield running
