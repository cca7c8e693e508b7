"""gRPC status -> HTTP status by google/rpc/code.proto, and RFC 9457 bodies."""

from __future__ import annotations

import json

import grpc
import pytest
from flask import Flask

from gateway.errors import (
    HTTP_STATUS_OF_GRPC,
    PROBLEM_CONTENT_TYPE,
    Problem,
    http_status_of,
    problem_response,
    upstream_problem,
)

CODE_PROTO_TABLE = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


@pytest.mark.parametrize(("code", "status"), CODE_PROTO_TABLE.items())
def test_each_grpc_code_maps_to_its_code_proto_http_status(code: str, status: int) -> None:
    assert http_status_of(grpc.StatusCode[code]) == status


def test_the_table_covers_every_grpc_code() -> None:
    assert set(HTTP_STATUS_OF_GRPC) == set(grpc.StatusCode)


def test_client_errors_show_the_upstream_detail() -> None:
    problem = upstream_problem(grpc.StatusCode.ALREADY_EXISTS, "that username is taken")
    assert (problem.status, problem.detail) == (409, "that username is taken")


@pytest.mark.parametrize(
    "code", ["INTERNAL", "UNKNOWN", "DATA_LOSS", "UNAVAILABLE", "DEADLINE_EXCEEDED"]
)
def test_server_errors_hide_the_upstream_detail(code: str) -> None:
    problem = upstream_problem(grpc.StatusCode[code], "sqlalchemy.exc.OperationalError at db.py:12")
    assert problem.status >= 500
    assert "sqlalchemy" not in problem.detail
    assert "db.py" not in problem.detail


def test_an_upstream_cancelling_a_call_is_503_not_499() -> None:
    # Only an upstream that is shutting down cancels: the gateway never cancels its calls.
    problem = upstream_problem(grpc.StatusCode.CANCELLED, "Cancelled")
    assert problem.status == 503


def test_problem_body_has_the_rfc_9457_members_and_request_id() -> None:
    with Flask("t").app_context():
        response = problem_response(
            Problem(409, "taken", headers={"X-A": "1"}), request_id="r1", instance="/v1/x"
        )
    assert response.status_code == 409
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert response.headers["X-A"] == "1"
    assert response.headers["Cache-Control"] == "no-store"
    assert json.loads(response.get_data()) == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "taken",
        "instance": "/v1/x",
        "request_id": "r1",
    }


def test_status_499_has_a_title() -> None:
    with Flask("t").app_context():
        response = problem_response(Problem(499, "cancelled"), request_id="r")
    assert json.loads(response.get_data())["title"] == "Client Closed Request"
