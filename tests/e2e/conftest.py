"""The three real processes, started the way `make run` starts them, on SQLite and on MariaDB.

The stack signs with a key the tests also hold (`RealStack.signing_key`), so they can
mint hostile tokens that carry a valid signature. Rate limits are off: these tests send
many requests from 127.0.0.1; tests of the limits switch them on in a stack of their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import RealStack, real_stack

# The stack the tests of this folder share, by its former name.
RunningStack = RealStack


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def running_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, auth_key_pem: bytes
) -> Iterator[RealStack]:
    server = request.getfixturevalue("mysql_server_url") if request.param == "mysql" else None
    with real_stack(
        tmp_path_factory.mktemp("stack"), mysql_server_url=server, signing_key_pem=auth_key_pem
    ) as stack:
        yield stack
