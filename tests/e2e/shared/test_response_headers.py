"""What every response of the real gateway, under gunicorn or granian, says about itself in its
headers."""

from __future__ import annotations

import uuid

import requests

from tests.e2e.shared.conftest import ON_EITHER_SERVER, RunningStack

pytestmark = ON_EITHER_SERVER


def answers(stack: RunningStack) -> dict[str, requests.Response]:
    """One response of each kind the gateway gives: success, problem, unmatched, health."""
    user = {"username": f"headers_{uuid.uuid4().hex[:10]}", "password": "correct horse battery"}
    return {
        "register": stack.post("/v1/auth/register", user),
        "401": requests.get(f"{stack.url}/v1/profile", timeout=10),
        "404": requests.get(f"{stack.url}/no/such/route", timeout=10),
        "healthz": requests.get(f"{stack.url}/healthz", timeout=10),
        "jwks": requests.get(f"{stack.url}/.well-known/jwks.json", timeout=10),
    }


def test_responses_name_no_server_software(running_stack: RunningStack) -> None:
    responses = answers(running_stack)
    assert {kind: r.headers.get("Server") for kind, r in responses.items()} == dict.fromkeys(
        responses, "authgate"
    )
    mentions = {
        (kind, name)
        for kind, r in responses.items()
        for name, value in r.headers.items()
        if any(software in value.lower() for software in ("gunicorn", "granian", "werkzeug"))
    }
    assert mentions == set()


def test_responses_forbid_content_sniffing(running_stack: RunningStack) -> None:
    responses = answers(running_stack)
    assert {
        kind: r.headers.get("X-Content-Type-Options") for kind, r in responses.items()
    } == dict.fromkeys(responses, "nosniff")
