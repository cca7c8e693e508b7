"""A property of the body parser: any JSON a client sends gets a clean 4xx or a success.

Hostile values (huge integers past Python's 4300-digit limit, deep nesting, odd floats,
nulls, lone surrogates, the routes' own field names with wrong types) go through the
real gateway app to fake upstreams on real gRPC servers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.fake_upstreams import FakeUpstreams

ROUTES = [
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/refresh"),
    ("PATCH", "/v1/profile"),
]
FIELD_NAMES = [
    "refresh_token",
    "username",
    "password",
    "email",
    "display_name",
    "bio",
    "user_id",
    "a",
    "refreshToken",
]
PROBLEM = "application/problem+json"

# Python cannot even write such an integer (str <-> int stops at 4300 digits): a marker
# stands for it and is replaced by its digits in the JSON text.
_HUGE = re.compile(r'"<huge:(-?)(\d+)>"')
huge_integers = st.integers(min_value=4000, max_value=6000).flatmap(
    lambda digits: st.sampled_from([f"<huge:{digits}>", f"<huge:-{digits}>"])
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_integers,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.sampled_from(["\ud800", "\u202e\u200b\u2028", "\x00", "-0", "1e999", "9" * 40]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), values, max_size=5)


def _encoded(body: dict[str, Any]) -> bytes:
    # Lone surrogates become \ud800 escapes, which JSON allows.
    text = json.dumps(body)
    return _HUGE.sub(lambda match: match.group(1) + "9" * int(match.group(2)), text).encode()


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_any_json_object_gets_a_problem_4xx_or_a_success(
    client: FlaskClient, fakes: FakeUpstreams, route: tuple[str, str], body: dict[str, Any]
) -> None:
    method, path = route
    token = fakes.minter.mint("user-1", "alice")
    response = client.open(
        path,
        method=method,
        data=_encoded(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.content_type == PROBLEM
        assert "Traceback" not in response.get_data(as_text=True)


def test_an_integer_of_more_than_4300_digits_is_a_400_not_a_500(client: FlaskClient) -> None:
    body = b'{"refresh_token":"x","a":' + b"9" * 5000 + b"}"
    response = client.post("/v1/auth/logout", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.content_type == PROBLEM
    assert response.get_json(force=True)["detail"] == (
        "the JSON body contains a number with too many digits"
    )
