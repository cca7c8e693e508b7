"""The transcoder: strict JSON -> request message, and reply -> contract JSON."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from authgate.auth.v1 import auth_pb2
from authgate.profile.v1 import profile_pb2
from google.protobuf import timestamp_pb2

from gateway.routes import Route, build_routes, fronted_services
from gateway.transcode import (
    MAX_JSON_DEPTH,
    InvalidInput,
    build_request,
    parse_json_object,
    response_json,
)
from tests.gateway.sample_proto import sample_service


def _route(name: str) -> Route:
    routes = build_routes(fronted_services()) + build_routes({sample_service(): "sample"})
    return next(r for r in routes if r.method.name == name)


def _build(
    name: str,
    body: dict[str, Any] | None,
    *,
    path: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
) -> Any:
    return build_request(_route(name), body=body, path_arguments=path or {}, query=query or [])


def _rejects(name: str, body: dict[str, Any] | None, message: str, **kwargs: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        _build(name, body, **kwargs)
    assert caught.value.message == message


EVERY_OK: dict[str, Any] = {"name": "n"}

# --- the JSON text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the request body is empty; it must be a JSON object"),
        (b"   ", "the request body is empty; it must be a JSON object"),
        (b"{", "the request body is not valid JSON (line 1, column 2)"),
        (b"username=a", "the request body is not valid JSON (line 1, column 1)"),
        (b"[]", "the request body must be a JSON object"),
        (b'"text"', "the request body must be a JSON object"),
        (b"null", "the request body must be a JSON object"),
        (b'{"a": 1, "a": 2}', "the JSON body repeats the key 'a'"),
        (b'{"a": NaN}', "the JSON body contains NaN, which is not a JSON number"),
        (b'{"a": -Infinity}', "the JSON body contains -Infinity, which is not a JSON number"),
        (b'{"a": 1e400}', "the JSON body contains a number that is too large"),
        (b'{"a": "\xff"}', "the request body is not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "the request body is not valid JSON (line 1, column 1)"),
    ],
)
def test_bad_json_text_is_refused_with_a_clear_message(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json_object(raw)
    assert caught.value.message == message


def test_nesting_beyond_the_limit_is_refused() -> None:
    deep = b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(InvalidInput, match="nested too deeply"):
        parse_json_object(deep)


def test_nesting_deeper_than_the_parser_can_go_is_refused_not_crashed() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(InvalidInput, match="nested too deeply"):
        parse_json_object(b'{"a":' + deep + b"}")


def test_a_valid_object_is_returned() -> None:
    assert parse_json_object('{"a": "ü", "b": [1, 2.5]}'.encode()) == {"a": "ü", "b": [1, 2.5]}


# --- fields of the contract ----------------------------------------------------------------


def test_register_body_becomes_the_request_message() -> None:
    request = _build("Register", {"username": "alice", "password": "p" * 12, "email": "a@x.io"})
    assert request == auth_pb2.RegisterRequest(username="alice", password="p" * 12, email="a@x.io")


def test_missing_required_field_is_named() -> None:
    _rejects("Register", {"username": "alice"}, "field 'password' is required")


def test_empty_required_string_is_refused() -> None:
    _rejects("Login", {"username": "", "password": "x"}, "field 'username' must not be empty")


def test_unknown_field_is_named() -> None:
    _rejects("Login", {"username": "a", "password": "b", "admin": True}, "unknown field 'admin'")


def test_camel_case_alias_of_a_field_is_unknown() -> None:
    _rejects("Refresh", {"refreshToken": "t"}, "unknown field 'refreshToken'")


@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"a": 1}])
def test_non_string_for_a_string_field_is_refused(value: Any) -> None:
    _rejects("Login", {"username": value, "password": "b"}, "field 'username' must be a string")


def test_null_value_is_refused() -> None:
    _rejects("UpdateProfile", {"bio": None}, "field 'bio' must not be null")


def test_output_only_field_sent_by_the_client_is_refused() -> None:
    # Profile's output-only fields are not in the update request, so they are unknown there.
    _rejects("UpdateProfile", {"user_id": "x"}, "unknown field 'user_id'")
    _rejects("CreateEvery", {**EVERY_OK, "id": "x"}, "field 'id' is read-only and cannot be set")


def test_optional_fields_sent_are_present_even_when_empty() -> None:
    request = _build("UpdateProfile", {"email": ""})
    assert request.HasField("email")
    assert not request.HasField("bio")


def test_lone_surrogate_in_a_string_is_refused() -> None:
    _rejects("UpdateProfile", {"bio": "\ud800"}, "field 'bio' must be valid Unicode text")


def test_long_or_odd_field_names_are_shortened_and_escaped() -> None:
    with pytest.raises(InvalidInput) as caught:
        _build("Login", {"x" * 100 + "'\n": 1})
    assert caught.value.message == f"unknown field '{'x' * 61}...'"


# --- every field kind (test proto) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"i32": True}, "field 'i32' must be a whole number"),
        ({"i32": 1.5}, "field 'i32' must be a whole number"),
        ({"i32": "1"}, "field 'i32' must be a whole number"),
        ({"i32": 2**31}, "field 'i32' must be between -2147483648 and 2147483647"),
        ({"u32": -1}, "field 'u32' must be between 0 and 4294967295"),
        ({"i64": "12x"}, "field 'i64' must be a whole number"),
        ({"i64": "--5"}, "field 'i64' must be a whole number"),
        ({"i64": "\u0665"}, "field 'i64' must be a whole number"),
        (
            {"i64": 2**63},
            "field 'i64' must be between -9223372036854775808 and 9223372036854775807",
        ),
        ({"flag": 1}, "field 'flag' must be true or false"),
        ({"flag": "true"}, "field 'flag' must be true or false"),
        ({"ratio": False}, "field 'ratio' must be a number"),
        ({"ratio": "1.0"}, "field 'ratio' must be a number"),
        ({"small": 1e39}, "field 'small' is too large"),
        ({"data": "not base64!"}, "field 'data' must be base64 text"),
        ({"data": 5}, "field 'data' must be base64 text"),
        ({"color": "BLUE"}, "field 'color' must be one of COLOR_UNSPECIFIED, RED"),
        ({"color": 1}, "field 'color' must be one of COLOR_UNSPECIFIED, RED"),
        ({"tags": "a"}, "field 'tags' must be a list"),
        ({"tags": ["a", 2]}, "field 'tags[1]' must be a string"),
        ({"tags": [None]}, "field 'tags[0]' must not be null"),
        ({"counts": []}, "field 'counts' must be an object"),
        ({"counts": {"a": "1"}}, "field 'counts.a' must be a whole number"),
        ({"inner": "x"}, "field 'inner' must be an object"),
        ({"inner": {}}, "field 'inner.name' is required"),
        ({"inner": {"name": "n", "sise": 1}}, "unknown field 'inner.sise'"),
        ({"inners": [{"name": "n"}, {"name": 1}]}, "field 'inners[1].name' must be a string"),
        (
            {"when": "yesterday"},
            "field 'when' must be an RFC 3339 timestamp such as 2024-01-31T12:00:00Z",
        ),
        ({"when": 5}, "field 'when' must be an RFC 3339 timestamp such as 2024-01-31T12:00:00Z"),
        ({"a": "x", "b": "y"}, "fields 'a' and 'b' cannot both be set"),
    ],
)
def test_each_wrong_value_is_refused_with_the_field_named(
    body: dict[str, Any], message: str
) -> None:
    _rejects("CreateEvery", {**EVERY_OK, **body}, message)


def test_every_field_kind_is_accepted_when_right() -> None:
    request = _build(
        "CreateEvery",
        {
            "name": "n",
            "i32": -5,
            "i64": "9007199254740993",
            "u32": 7,
            "flag": False,
            "ratio": 2,
            "small": 0.5,
            "data": base64.b64encode(b"\x00\xff").decode(),
            "color": "RED",
            "tags": ["a", "b"],
            "counts": {"x": 1},
            "inner": {"name": "i", "size": 3},
            "inners": [{"name": "j"}],
            "when": "2024-01-31T12:00:00Z",
            "note": "",
        },
    )
    assert request.i64 == 9007199254740993
    assert request.data == b"\x00\xff"
    assert request.color == 1
    assert dict(request.counts) == {"x": 1}
    assert request.inner.size == 3
    assert request.when.seconds == 1706702400
    assert request.HasField("note")


# --- path and query ------------------------------------------------------------------------


def test_path_variables_fill_the_named_fields() -> None:
    request = _build("GetBook", None, path={"v0": "fiction", "v1": "42"})
    assert request.shelf.name == "fiction"
    assert request.book_id == 42


def test_path_variable_of_the_wrong_type_is_refused() -> None:
    _rejects("GetBook", None, "path 'book_id' must be a whole number", path={"v0": "s", "v1": "x"})


def test_scalar_query_parameters_fill_unbound_fields() -> None:
    request = _build(
        "GetThing", None, path={"v0": "t1"}, query=[("page_size", "10"), ("verbose", "true")]
    )
    assert (request.thing_id, request.page_size, request.verbose) == ("t1", 10, True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ([("nope", "1")], "unknown query parameter 'nope'"),
        ([("thing_id", "x")], "unknown query parameter 'thing_id'"),
        ([("tags", "x")], "unknown query parameter 'tags'"),
        (
            [("page_size", "1"), ("page_size", "2")],
            "query parameter 'page_size' is given more than once",
        ),
        ([("page_size", "ten")], "query parameter 'page_size' must be a whole number"),
        ([("verbose", "yes")], "query parameter 'verbose' must be true or false"),
    ],
)
def test_bad_query_parameters_are_refused(query: list[tuple[str, str]], message: str) -> None:
    _rejects("GetThing", None, message, path={"v0": "t1"}, query=query)


def test_query_parameters_are_refused_where_the_body_takes_every_field() -> None:
    _rejects(
        "Login",
        {"username": "a", "password": "b"},
        "unknown query parameter 'username'",
        query=[("username", "c")],
    )


def test_a_route_without_fields_refuses_any_query_parameter() -> None:
    _rejects("GetProfile", None, "unknown query parameter 'x'", query=[("x", "1")])


def test_a_field_bound_by_the_path_cannot_be_set_in_the_body() -> None:
    _rejects(
        "UpdateThing",
        {"thing_id": "other"},
        "field 'thing_id' is set by the URL path, not the body",
        path={"v0": "t1"},
    )


def test_a_required_field_bound_by_the_path_is_present() -> None:
    assert _build("UpdateThing", {"page_size": 3}, path={"v0": "t1"}).thing_id == "t1"


def test_a_body_naming_one_field_fills_that_field() -> None:
    route = _route("PutThing")
    request: Any = build_request(route, body={"name": "x"}, path_arguments={"v0": "t"}, query=[])
    assert request.thing_id == "t"
    assert request.thing.name == "x"


# --- replies -------------------------------------------------------------------------------


def test_reply_keeps_proto_names_and_prints_default_values() -> None:
    when = timestamp_pb2.Timestamp(seconds=1706702400)
    profile = profile_pb2.Profile(user_id="u", username="alice", created_at=when, updated_at=when)
    assert response_json(profile) == {
        "user_id": "u",
        "username": "alice",
        "display_name": "",
        "email": "",
        "bio": "",
        "created_at": "2024-01-31T12:00:00Z",
        "updated_at": "2024-01-31T12:00:00Z",
    }


def test_int32_reply_fields_stay_json_numbers() -> None:
    reply = auth_pb2.TokenResponse(
        access_token="a", token_type="Bearer", expires_in=900, refresh_expires_in=0
    )
    assert response_json(reply)["expires_in"] == 900
    assert response_json(reply)["refresh_expires_in"] == 0


# --- numbers with too many digits ----------------------------------------------------------


def test_an_integer_past_pythons_conversion_limit_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json_object(b'{"refresh_token": "x", "a": -' + b"9" * 5000 + b"}")
    assert caught.value.message == "the JSON body contains a number with too many digits"


def test_an_integer_with_as_many_digits_as_a_double_can_have_is_parsed() -> None:
    assert parse_json_object(b'{"a": ' + b"9" * 400 + b"}") == {"a": int("9" * 400)}


def test_integer_text_with_thousands_of_digits_is_not_a_whole_number() -> None:
    _rejects("CreateEvery", {**EVERY_OK, "i64": "9" * 5000}, "field 'i64' must be a whole number")
    _rejects(
        "GetThing",
        None,
        "query parameter 'page_size' must be a whole number",
        path={"v0": "t1"},
        query=[("page_size", "9" * 5000)],
    )


@pytest.mark.parametrize("text", ["1_000", "\u0661", " 1", "+1"])
def test_integer_text_is_ascii_digits_only(text: str) -> None:
    _rejects("CreateEvery", {**EVERY_OK, "i64": text}, "field 'i64' must be a whole number")


def test_base64_with_characters_outside_the_alphabet_is_refused() -> None:
    # ParseDict alone would skip the "!" and decode the rest.
    _rejects("CreateEvery", {**EVERY_OK, "data": "ab!cdefg"}, "field 'data' must be base64 text")
