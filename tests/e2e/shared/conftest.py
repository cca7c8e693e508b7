"""The three real processes, started the way `make run` starts them, on SQLite and on MariaDB,
shared by every module of this folder.

The stack signs with a key the tests also hold (`RealStack.signing_key`), so they can
mint hostile tokens that carry a valid signature. Rate limits are off: these tests send
many requests from 127.0.0.1; tests of the limits switch them on in a stack of their own.

One stack per database for this folder (and one with the gateway under granian, for the
tests marked ON_EITHER_SERVER): starting three processes is most of what an end-to-end
test costs. They start with the first test here that asks for one and stop after the
folder's last test (package scope), and `make test`'s parallel step gives the whole
folder to one process (tests/fixtures/scheduling.py), so each starts once. Only the
modules of this folder can ask for them. The tests keep to users of their own (new
usernames), so no test depends on what another left behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import RealStack, real_stack

# The stack the tests of this folder share, by its former name.
RunningStack = RealStack


def _shared_stack(
    tmp_path_factory: pytest.TempPathFactory,
    auth_key_pem: bytes,
    mysql_server_url: str | None,
    gateway_server: str | None = None,
) -> Iterator[RealStack]:
    with real_stack(
        tmp_path_factory.mktemp("stack"),
        mysql_server_url=mysql_server_url,
        signing_key_pem=auth_key_pem,
        gateway_server=gateway_server,
    ) as stack:
        yield stack


@pytest.fixture(scope="package")
def sqlite_stack(
    tmp_path_factory: pytest.TempPathFactory, auth_key_pem: bytes
) -> Iterator[RealStack]:
    yield from _shared_stack(tmp_path_factory, auth_key_pem, None)


@pytest.fixture(scope="package")
def mysql_stack(
    tmp_path_factory: pytest.TempPathFactory, auth_key_pem: bytes, mysql_server_url: str
) -> Iterator[RealStack]:
    yield from _shared_stack(tmp_path_factory, auth_key_pem, mysql_server_url)


@pytest.fixture(scope="package")
def granian_stack(
    tmp_path_factory: pytest.TempPathFactory, auth_key_pem: bytes
) -> Iterator[RealStack]:
    """On SQLite, the gateway under granian (GATEWAY_SERVER=granian)."""
    yield from _shared_stack(tmp_path_factory, auth_key_pem, None, "granian")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def running_stack(request: pytest.FixtureRequest) -> RealStack:
    stack: RealStack = request.getfixturevalue(f"{request.param}_stack")
    return stack


# For tests about the HTTP server rather than the database: `running_stack` on SQLite, on
# MariaDB and with the gateway under granian (which runs on SQLite).
ON_EITHER_SERVER = pytest.mark.parametrize(
    "running_stack",
    ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql), "granian"],
    indirect=True,
    scope="module",
)
