"""The cluster behaves as one system: any gateway, any replica, one count, one key set.

Against `make cluster`'s topology running for real (nginx, two gateways with two workers
each, two auth_svc and two profile_svc replicas, one MariaDB, one Redis), on loopback.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests
import sqlalchemy
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc

from auth_svc.keys import generate_key_file, load_key
from authgate_common.channels import open_channel
from tests.cluster.conftest import PASSWORD, Load, RunningCluster

# Serial: replicas are killed and timed under load, alone on the machine (make test).
pytestmark = [pytest.mark.cluster, pytest.mark.mysql, pytest.mark.serial]

LOCKOUT_THRESHOLD = 5  # auth_svc's default


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def profile(base: str, token: str) -> requests.Response:
    return requests.get(f"{base}/v1/profile", headers=bearer(token), timeout=10)


def parallel(count: int, send: Callable[[int], requests.Response]) -> list[requests.Response]:
    start = threading.Barrier(count)

    def attempt(index: int) -> requests.Response:
        start.wait()
        return send(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(attempt, range(count)))


def profile_and_jwks_reads(url: str, token: str) -> Callable[[requests.Session], requests.Response]:
    """Alternately a profile read (profile_svc) and a JWKS read (auth_svc)."""
    turns = itertools.count()

    def read(session: requests.Session) -> requests.Response:
        if next(turns) % 2:
            return session.get(f"{url}/v1/profile", headers=bearer(token), timeout=10)
        return session.get(f"{url}/.well-known/jwks.json", timeout=10)

    return read


def from_client(address: str) -> dict[str, str]:
    """Sent straight to a gateway, as nginx would: it trusts one proxy's X-Forwarded-For."""
    return {"X-Forwarded-For": address}


def test_a_token_from_either_gateway_works_through_both(running_cluster: RunningCluster) -> None:
    for issuer in (0, 1):
        tokens = running_cluster.register_and_login(running_cluster.gateway(issuer))
        for reader in (0, 1):
            answer = profile(running_cluster.gateway(reader), tokens["access_token"])
            assert answer.status_code == 200, answer.text
            assert answer.json()["username"] == tokens["username"]
        assert profile(running_cluster.url, tokens["access_token"]).status_code == 200


def test_each_gateway_spreads_its_calls_over_both_replicas_of_each_service(
    running_cluster: RunningCluster,
) -> None:
    tokens = running_cluster.register_and_login()
    for gateway in (0, 1):
        before_profile = [running_cluster.handled("profile", i, "GetProfile") for i in (0, 1)]
        before_auth = [running_cluster.handled("auth", i, "GetJwks") for i in (0, 1)]
        base = running_cluster.gateway(gateway)
        with requests.Session() as session:  # one connection: one worker's channels
            for _ in range(20):
                assert (
                    session.get(
                        f"{base}/v1/profile", headers=bearer(tokens["access_token"]), timeout=10
                    ).status_code
                    == 200
                )
                assert session.get(f"{base}/.well-known/jwks.json", timeout=10).status_code == 200
        after_profile = [running_cluster.handled("profile", i, "GetProfile") for i in (0, 1)]
        after_auth = [running_cluster.handled("auth", i, "GetJwks") for i in (0, 1)]
        # round_robin alternates: each replica answers about half of the 20.
        assert all(a - b >= 5 for a, b in zip(after_profile, before_profile, strict=True))
        assert all(a - b >= 5 for a, b in zip(after_auth, before_auth, strict=True))


def test_the_declared_login_limit_holds_across_gateways_and_workers(
    running_cluster: RunningCluster,
) -> None:
    """Login declares 10/minute: the 11th from one client is the first 429, wherever it lands."""
    client = from_client(f"198.51.100.{uuid.uuid4().int % 250 + 1}")
    statuses = [
        requests.post(
            f"{running_cluster.gateway(attempt % 2)}/v1/auth/login",
            json={"username": "nobody-here", "password": PASSWORD},
            headers=client,
            timeout=10,
        ).status_code
        for attempt in range(11)
    ]
    assert statuses == [401] * 10 + [429]


def posts_over_both_gateways(
    running_cluster: RunningCluster, count: int, path: str, body: object, network: str
) -> Counter[int]:
    """count POSTs at once, alternately to each gateway, each from its own client address
    in network (a /24 prefix): their statuses."""
    answers = parallel(
        count,
        lambda i: requests.post(
            f"{running_cluster.gateway(i % 2)}{path}",
            json=body,
            headers=from_client(f"{network}.{i + 1}"),
            timeout=10,
        ),
    )
    return Counter(a.status_code for a in answers)


def test_twenty_parallel_refreshes_over_both_gateways_give_exactly_one_200(
    running_cluster: RunningCluster,
) -> None:
    token = running_cluster.register_and_login()["refresh_token"]
    statuses = posts_over_both_gateways(
        running_cluster, 20, "/v1/auth/refresh", {"refresh_token": token}, "203.0.113"
    )
    assert statuses == {200: 1, 401: 19}


def test_fifty_parallel_wrong_passwords_over_both_gateways_are_counted_exactly(
    running_cluster: RunningCluster,
) -> None:
    username = running_cluster.register_and_login()["username"]
    wrong = {"username": username, "password": PASSWORD + "-wrong"}
    statuses = posts_over_both_gateways(running_cluster, 50, "/v1/auth/login", wrong, "192.0.2")
    assert statuses == {401: 50}
    engine = sqlalchemy.create_engine(running_cluster.settings.auth_database_url)
    try:
        with engine.connect() as connection:
            failed, locked_until = connection.execute(
                sqlalchemy.text(
                    "SELECT failed_logins, locked_until FROM users WHERE username_normalized = :n"
                ),
                {"n": username.lower()},
            ).one()
            engaged = connection.execute(
                sqlalchemy.text(
                    "SELECT COUNT(*) FROM audit_events e JOIN users u ON u.id = e.user_id"
                    " WHERE u.username_normalized = :n AND e.type = 'lockout_engaged'"
                ),
                {"n": username.lower()},
            ).scalar_one()
    finally:
        engine.dispose()
    # 50 addresses, one failure each: the lockout is per address, so each was checked, and
    # every one was counted on the account: exactly AUTH_ACCOUNT_LOCK_THRESHOLD (50 by
    # default) engaged the account-wide lock once, and its count starts afresh.
    assert (failed, engaged) == (0, 1)
    assert locked_until is not None


def test_a_new_signing_key_is_used_by_both_replicas_and_trusted_by_every_gateway(
    running_cluster: RunningCluster,
) -> None:
    username = running_cluster.register_and_login()["username"]
    new_kid = load_key(generate_key_file(running_cluster.settings.keys_dir)).kid
    # Both replicas watch the shared folder (every 0.5 s here): no restart, no signal.
    for replica in (0, 1):
        deadline = time.monotonic() + 10
        while True:
            access_token = _login_at_replica(running_cluster, replica, username)
            if jwt.get_unverified_header(access_token)["kid"] == new_kid:
                break
            assert time.monotonic() < deadline, f"auth-{replica + 1} kept the old key"
            time.sleep(0.1)
        # The gateways have not seen this kid before: each fetches the JWKS once.
        for gateway in (0, 1):
            assert profile(running_cluster.gateway(gateway), access_token).status_code == 200


def _login_at_replica(running_cluster: RunningCluster, replica: int, username: str) -> str:
    """A login sent to one auth replica directly over gRPC: its access token."""
    with open_channel(running_cluster.settings.auth_target(replica)) as channel:
        reply = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=username, password=PASSWORD), timeout=10
        )
    return reply.access_token


def _kill_and_restart(running_cluster: RunningCluster, names: tuple[str, ...], load: Load) -> float:
    """SIGKILL names under load, let the load run on for 2 s, then start them again together."""
    load.wait_for(40)
    killed_at = time.monotonic()
    for name in names:
        running_cluster.cluster.kill(name)
    load.run_for(2.0)
    running_cluster.cluster.restart(*names, timeout=60)
    return killed_at


def test_replicas_killed_under_load_cost_no_read(
    running_cluster: RunningCluster,
) -> None:
    token = running_cluster.register_and_login()["access_token"]

    read = profile_and_jwks_reads(running_cluster.url, token)

    with Load(read) as load:
        killed_at = _kill_and_restart(running_cluster, ("auth-1", "profile-1"), load)
        restarted_at = time.monotonic()
        # Traffic returns to the restarted replicas (their counters start again at 0).
        deadline = time.monotonic() + 20
        while (
            running_cluster.handled("profile", 0, "GetProfile") == 0
            or running_cluster.handled("auth", 0, "GetJwks") == 0
        ):
            assert time.monotonic() < deadline, "no traffic reached the restarted replicas"
            time.sleep(0.1)
    # Both reads are RPCs the protos declare safe to repeat (GetProfile IDEMPOTENT, GetJwks
    # NO_SIDE_EFFECTS): a call that was in flight on a killed replica is sent again to the
    # other by the gateway's channel (authgate_common.channels), so not even the second
    # of the kill costs a request. (Without the retry policy it cost one or two 503s.)
    assert load.failures(killed_at, restarted_at) == Counter()
    assert load.failures(restarted_at) == Counter()


def test_a_gateway_killed_under_load_is_routed_around_by_nginx(
    running_cluster: RunningCluster,
) -> None:
    token = running_cluster.register_and_login()["access_token"]
    url = running_cluster.url
    with Load(lambda s: s.get(f"{url}/v1/profile", headers=bearer(token), timeout=10)) as load:
        killed_at = _kill_and_restart(running_cluster, ("gateway-1",), load)
        load.wait_for(40)
    # A GET in flight on the killed gateway is retried by nginx on the other one
    # (proxy_next_upstream error timeout: nginx resends idempotent methods only), unless
    # the gateway had begun to answer it: nginx passes a response's header on as soon as
    # it has it, and a response cut short cannot be sent again (seen once with a busy
    # core: gunicorn writes the header and the body in two calls, and the SIGKILL came
    # between them). So: no refusal and no 5xx, at most one cut answer per request in
    # flight.
    cut_short = load.failures(killed_at)
    assert set(cut_short) <= {"599: ChunkedEncodingError"}
    assert cut_short.total() <= load.threads


@pytest.mark.parametrize("replica", ["auth-2", "profile-2"])
def test_sigterm_of_a_replica_under_load_loses_no_request(
    running_cluster: RunningCluster, replica: str
) -> None:
    token = running_cluster.register_and_login()["access_token"]

    read = profile_and_jwks_reads(running_cluster.url, token)

    with Load(read) as load:
        load.wait_for(40)
        stopped_at = time.monotonic()
        process = running_cluster.cluster.process(replica)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        load.wait_for(80)
        running_cluster.cluster.restart(replica, timeout=60)
        load.wait_for(40)
    assert load.failures(stopped_at) == Counter()
