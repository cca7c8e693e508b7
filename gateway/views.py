"""The one generic view: HTTP request -> authenticated gRPC call -> HTTP response.

A view function is made per route from its descriptor; no RPC has code of its own.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

import grpc
from flask import Response, g, request
from google.protobuf.message import Message
from werkzeug.wsgi import get_input_stream

from authgate_common import metadata
from gateway.auth import Authenticator, Caller, challenge
from gateway.errors import Problem, upstream_problem
from gateway.routes import Route
from gateway.transcode import InvalidInput, build_request, parse_json_object, response_json
from gateway.upstream import Metadata, Upstreams

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
CACHE_CONTROL = "cache-control"
MAX_USER_AGENT = 256  # what the audit log keeps
_UTF8_CHARSETS = frozenset({"utf-8", "utf8"})
_PRINTABLE_ASCII_BUT_PERCENT = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def make_view(
    route: Route, authenticator: Authenticator, upstreams: Upstreams, *, max_body_bytes: int
) -> Callable[..., Response]:
    def view(**path_arguments: str) -> Response:
        caller = None
        if not route.public:
            caller = authenticator.authenticate(request.headers.get("Authorization"))
            g.user_id = caller.identity.user_id
            authenticator.authorize(caller, route.required_roles)
        body = _read_body(route, max_body_bytes)
        try:
            message = build_request(
                route,
                body=body,
                path_arguments=path_arguments,
                query=request.args.items(multi=True),
            )
        except InvalidInput as exc:
            raise Problem(400, exc.message) from None
        try:
            sent = call_metadata(caller, g.request_id, client=client_of_request())
            reply, answered_metadata = upstreams.call(route, message, sent)
        except grpc.RpcError as exc:
            raise _problem_of(route, exc) from None
        response = _success(route, reply)
        for key, value in answered_metadata:
            # The service that owns an answer says how long it may be cached (JWKS,
            # discovery); every other answer keeps the gateway's `no-store`.
            if key == CACHE_CONTROL and isinstance(value, str):
                response.headers["Cache-Control"] = value
        return response

    view.__name__ = route.endpoint
    view.__qualname__ = route.endpoint
    return view


def _read_body(route: Route, max_body_bytes: int) -> dict[str, Any] | None:
    if not route.body:
        return None  # e.g. GET: a body, if any, is not looked at
    charset = request.mimetype_params.get("charset")
    if request.mimetype != JSON_CONTENT_TYPE or (
        charset is not None and charset.lower() not in _UTF8_CHARSETS
    ):
        raise Problem(415, "the request body must be sent as 'Content-Type: application/json'")
    try:
        return parse_json_object(_body_bytes(max_body_bytes))
    except InvalidInput as exc:
        raise Problem(400, exc.message) from None


def _body_bytes(limit: int) -> bytes:
    """The body, refused with 413 past limit, also when it is chunked (no Content-Length)."""
    too_large = Problem(413, f"the request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    # Bounded by Content-Length, or ended by a server that decodes chunked bodies;
    # one byte more than the limit tells "too large" from "exactly the limit".
    data = get_input_stream(request.environ, max_content_length=None).read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


def client_of_request() -> Metadata:
    """The client's address (trusted-proxy rule, see app.py) and User-Agent, for audit."""
    sent = [(metadata.CLIENT_IP, g.client_ip)]
    user_agent = request.headers.get("User-Agent", "")[:MAX_USER_AGENT]
    if user_agent:
        sent.append((metadata.CLIENT_USER_AGENT, metadata_text(user_agent)))
    return sent


def call_metadata(caller: Caller | None, request_id: str, *, client: Metadata = ()) -> Metadata:
    """What the upstream learns about the request; identity only from a verified token.

    Nothing the client sent is passed through as metadata: every value is the gateway's own.
    """
    sent = [(metadata.REQUEST_ID, request_id), *client]
    if caller is not None:
        sent += [
            (metadata.AUTHORIZATION, f"Bearer {caller.token}"),
            (metadata.USER_ID, metadata_text(caller.identity.user_id)),
            (metadata.USERNAME, metadata_text(caller.identity.username)),
        ]
    return sent


def metadata_text(value: str) -> str:
    """Printable ASCII as is; anything else percent-encoded (UTF-8), as gRPC metadata must be."""
    if all(" " <= ch <= "~" for ch in value):
        return value
    return urllib.parse.quote(value, safe=_PRINTABLE_ASCII_BUT_PERCENT)


def _problem_of(route: Route, error: grpc.RpcError) -> Problem:
    # The errors raised by calls are also grpc.Call objects that carry the status.
    call: Any = error
    code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    details = call.details() if hasattr(call, "details") else None
    problem = upstream_problem(code, details)
    if problem.status >= 500:
        log.warning(
            "upstream call failed",
            extra={
                "rpc": route.grpc_path,
                "code": code.name,
                "upstream_detail": details,
                "request_id": g.request_id,
            },
        )
    if problem.status == 401:
        problem.headers["WWW-Authenticate"] = (
            challenge() if route.public else challenge("invalid_token", problem.detail)
        )
    if problem.status == 429 and hasattr(call, "trailing_metadata"):
        for key, value in call.trailing_metadata() or ():
            if key == "retry-after" and isinstance(value, str) and value.isdigit():
                problem.headers["Retry-After"] = value
    return problem


def _success(route: Route, reply: Message) -> Response:
    if route.success_status == 204:
        empty = Response(status=204)
        empty.headers.remove("Content-Type")
        return empty
    body = json.dumps(response_json(reply), separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=route.success_status, content_type=JSON_CONTENT_TYPE)
