"""gRPC status -> HTTP status, and RFC 9457 problem+json responses.

An upstream's message is shown only for client errors (4xx); for server errors
the client gets a generic sentence and the real one goes to the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import grpc
from flask import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"

# google/rpc/code.proto, "HTTP Mapping" of each code.
HTTP_STATUS_OF_GRPC: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

_GENERIC_DETAIL: Mapping[int, str] = {
    500: "the request could not be completed because of an internal error",
    501: "this operation is not implemented",
    503: "the service is temporarily unavailable, try again later",
    504: "the service did not answer in time, try again later",
}
_TITLES: Mapping[int, str] = {499: "Client Closed Request"}


def http_status_of(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_OF_GRPC.get(code, 500)


def title_of(status: int) -> str:
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def generic_detail(status: int) -> str:
    return _GENERIC_DETAIL.get(status, _GENERIC_DETAIL[500])


class Problem(Exception):
    """An HTTP error to answer with problem+json; detail is written for the client."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


def upstream_problem(code: grpc.StatusCode, details: str | None) -> Problem:
    """The client's view of an upstream error: details only for client errors."""
    if code == grpc.StatusCode.CANCELLED:
        # The gateway never cancels its own calls: an upstream that is shutting down
        # cancels the calls it will not serve. For the client that is "unavailable".
        return Problem(503, generic_detail(503))
    status = http_status_of(code)
    if 400 <= status < 500 and details:
        return Problem(status, details)
    if 400 <= status < 500:
        return Problem(status, title_of(status).lower())
    return Problem(status, generic_detail(status))


def problem_response(problem: Problem, *, request_id: str, instance: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title_of(problem.status),
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance:
        body["instance"] = instance
    body["request_id"] = request_id
    for key, value in problem.extensions.items():
        body.setdefault(key, value)
    response = Response(
        json.dumps(body, separators=(",", ":")),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in problem.headers.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response
