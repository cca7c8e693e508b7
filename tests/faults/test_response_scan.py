"""The scan of response bodies finds internals and passes clean problem bodies."""

from __future__ import annotations

import pytest

from tests.fixtures.response_scan import internals_in


@pytest.mark.parametrize(
    "body",
    [
        'Traceback (most recent call last):\n  File "/work/main/gateway/views.py", line 3',
        '(pymysql.err.OperationalError) (2003, "Can\'t connect to MySQL server")',
        "sqlalchemy.exc.OperationalError: database is locked",
        "<_InactiveRpcError of RPC that terminated with: status = StatusCode.UNAVAILABLE>",
        "SELECT users.id FROM users WHERE users.username = %(username)s",
        "error in /tmp/pytest-of-root/state/auth.db",
        '{"detail": "failed to connect to all addresses; grpc_status:14"}',
    ],
)
def test_internals_are_found(body: str) -> None:
    assert internals_in(body)


def test_random_letters_in_tokens_are_not_mistaken_for_internals() -> None:
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkY3VDRucmMtRFE4GRPcXZ5"  # "GRPc" by chance
    body = '{"access_token":"' + token + '","token_type":"Bearer"}'
    assert internals_in(body) == []


def test_a_clean_problem_body_passes() -> None:
    body = (
        '{"type":"about:blank","title":"Service Unavailable","status":503,'
        '"detail":"the service is temporarily unavailable, try again later",'
        '"instance":"/v1/auth/login","request_id":"4f0c"}'
    )
    assert internals_in(body) == []
