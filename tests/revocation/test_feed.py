"""The revocation feed end to end over real gRPC: auth servers on SQLite and MariaDB, verifiers
subscribed to them, revocations written the way the admin and account code writes them."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy
from authgate.auth.v1 import auth_pb2, revocation_pb2, revocation_pb2_grpc

from auth_svc.audit import COMMAND_LINE
from auth_svc.config import AuthConfig
from auth_svc.keys import KeyRing, generate_key_file
from auth_svc.models import revocation_sequence, revocations
from auth_svc.revocations import RevocationKind, RevocationLog, token_lifetime_bound
from auth_svc.server import AuthServer, build_administration, build_server
from authgate_common.db import make_sessions
from authgate_common.revocation import RevocationsUnavailable
from authgate_common.settings import RevocationSettings
from authgate_common.tokens import TokenSettings
from tests.fixtures.auth_fixtures import AuthConfigFactory
from tests.fixtures.profile_fixtures import ProfileServerFactory
from tests.harness import wait_until
from tests.revocation.helpers import (
    PASSWORD,
    TIMEOUT,
    ManualClock,
    SubscribedVerifier,
    auth_stub,
    register_and_login,
    revoke_session,
    revoke_user,
    subscribe,
)

# The contract: refused at every verifier within 2 seconds.
WITHIN = 2.0


Subscribe = Callable[..., SubscribedVerifier]


@pytest.fixture
def subscribed(token_settings: TokenSettings) -> Iterator[Subscribe]:
    """subscribed(target, **subscribe options) -> a verifier of the test's tokens on the
    feed of the auth server at target; every one is closed after the test."""
    made: list[SubscribedVerifier] = []

    def make(target: str, **options: Any) -> SubscribedVerifier:
        verifier = subscribe(target, token_settings, **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()


@pytest.fixture
def channel(auth_server: AuthServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(auth_server.target) as opened:
        yield opened


LogOf = Callable[[AuthConfig], tuple[RevocationLog, sqlalchemy.Engine]]


@pytest.fixture
def log_of() -> Iterator[LogOf]:
    """The revocation log on a config's database, as the auth service writes it."""
    engines: list[sqlalchemy.Engine] = []

    def of(config: AuthConfig) -> tuple[RevocationLog, sqlalchemy.Engine]:
        engine = sqlalchemy.create_engine(config.database_url)
        engines.append(engine)
        lifetime = token_lifetime_bound(config.tokens)
        return RevocationLog(make_sessions(engine), token_lifetime=lifetime), engine

    yield of
    for engine in engines:
        engine.dispose()


AuthLog = tuple[RevocationLog, sqlalchemy.Engine]


@pytest.fixture
def auth_log(auth_config: AuthConfig, log_of: LogOf) -> AuthLog:
    """The revocation log of `auth_server`'s database, and its engine."""
    return log_of(auth_config)


@pytest.fixture
def stub(channel: grpc.Channel) -> Any:
    """An AuthService stub on `auth_server`."""
    return auth_stub(channel)


@pytest.fixture
def alice(stub: Any) -> tuple[str, Any]:
    """alice registered and logged in: her user id and the login's TokenResponse."""
    return register_and_login(stub, "alice")


@pytest.fixture
def verifier(auth_server: AuthServer, subscribed: Subscribe) -> SubscribedVerifier:
    """A verifier subscribed to the feed of auth_server."""
    return subscribed(auth_server.target)


def _refresh_code(stub: Any, refresh_token: str) -> grpc.StatusCode:
    try:
        stub.Refresh(auth_pb2.RefreshRequest(refresh_token=refresh_token), timeout=TIMEOUT)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def test_a_revoked_user_is_refused_within_2s_and_their_refresh_at_once(
    alice: tuple[str, Any], verifier: SubscribedVerifier, stub: Any, auth_log: AuthLog
) -> None:
    user_id, login = alice
    assert verifier.refusal(login.access_token) is None  # now in the verified-token cache

    revoke_user(*auth_log, user_id)
    revoked_at = time.monotonic()

    assert _refresh_code(stub, login.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    assert verifier.wait_for(lambda: verifier.refusal(login.access_token) == "revoked", WITHIN)
    assert time.monotonic() - revoked_at < WITHIN


def test_a_revoked_session_is_refused_and_the_users_other_session_is_not(
    alice: tuple[str, Any], verifier: SubscribedVerifier, stub: Any, auth_log: AuthLog
) -> None:
    user_id, first = alice
    second = stub.Login(
        auth_pb2.LoginRequest(username="alice", password="correct horse battery staple"),
        timeout=TIMEOUT,
    )
    sid = jwt.decode(first.access_token, options={"verify_signature": False})["sid"]

    revoke_session(*auth_log, user_id, sid)

    assert _refresh_code(stub, first.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    assert verifier.wait_for(lambda: verifier.refusal(first.access_token) == "revoked", WITHIN)
    assert verifier.refusal(second.access_token) is None
    assert _refresh_code(stub, second.refresh_token) == grpc.StatusCode.OK


def test_revoking_access_tokens_only_keeps_the_session_and_its_next_token_works(
    alice: tuple[str, Any], verifier: SubscribedVerifier, stub: Any, auth_log: AuthLog
) -> None:
    # A role change: earlier tokens carry the old roles, a refresh gives the new ones.
    user_id, login = alice

    revoke_user(*auth_log, user_id, end_sessions=False)
    refreshed = stub.Refresh(
        auth_pb2.RefreshRequest(refresh_token=login.refresh_token), timeout=TIMEOUT
    )

    assert verifier.wait_for(lambda: verifier.refusal(login.access_token) == "revoked", WITHIN)
    # Issued in the same second as the revocation, it still carries a later iat.
    assert verifier.refusal(refreshed.access_token) is None


def test_a_role_removal_narrows_a_subscribers_earlier_tokens_within_2s_and_refuses_none(
    auth_server: AuthServer,
    stub: Any,
    subscribed: Subscribe,
    auth_config: AuthConfig,
) -> None:
    engine = sqlalchemy.create_engine(auth_config.database_url)
    try:
        admin = build_administration(engine, auth_config.tokens)
        register_and_login(stub, "alice")
        for role in ("admin", "support"):
            admin.grant_role("alice", role, COMMAND_LINE)
        login = stub.Login(
            auth_pb2.LoginRequest(username="alice", password=PASSWORD), timeout=TIMEOUT
        )
        verifier = subscribed(auth_server.target)
        assert verifier.verifier.verify(login.access_token).roles == {"admin", "support"}

        admin.revoke_role("alice", "admin", COMMAND_LINE)

        def roles() -> frozenset[str]:
            return verifier.verifier.verify(login.access_token).roles

        assert verifier.wait_for(lambda: roles() == {"support"}, WITHIN)
        assert verifier.refusal(login.access_token) is None  # narrowed, never refused
        refreshed = stub.Refresh(
            auth_pb2.RefreshRequest(refresh_token=login.refresh_token), timeout=TIMEOUT
        )
        # The session lives on, and its next token carries the roles as they are.
        assert verifier.verifier.verify(refreshed.access_token).roles == {"support"}
    finally:
        engine.dispose()


def test_a_revocation_rolled_back_with_its_change_leaves_nothing(
    auth_server: AuthServer,
    auth_log: AuthLog,
) -> None:
    log, engine = auth_log

    def failing_change() -> None:
        with make_sessions(engine).begin() as session:
            log.revoke_user(session, "user-1", reason="test", at=datetime.now(UTC))
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()

    with engine.connect() as connection:
        assert (
            connection.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(revocations)
            ).scalar_one()
            == 0
        )
        assert (
            connection.execute(sqlalchemy.select(revocation_sequence.c.last_id)).scalar_one() == 0
        )


def test_ids_increase_expired_rows_are_pruned_and_left_out_of_snapshots(
    # No server: its feed prunes expired rows too, which would race this test's prune.
    token_settings: TokenSettings,
    auth_log: AuthLog,
) -> None:
    log, engine = auth_log
    now = datetime.now(UTC)
    lifetime = token_lifetime_bound(token_settings)
    with make_sessions(engine).begin() as session:
        old = log.revoke_user(
            session, "old", reason="test", at=now - lifetime - timedelta(seconds=1)
        )
    first = revoke_user(log, engine, "user-1")
    second = log.revoke_keys(["kid-1"], now)[0]

    assert old < first < second
    live = log.live_after(0, now, limit=10)
    assert [(row.kind, row.subject) for row in live] == [
        (RevocationKind.USER, "user-1"),
        (RevocationKind.KEY, "kid-1"),
    ]
    assert live[0].expires_at == live[0].not_before + lifetime
    assert [row.id for row in log.live_after(first, now, limit=10)] == [second]
    assert log.prune(now) == 1
    assert log.last_id() == second


def test_the_feed_resumes_after_the_auth_server_restarts_without_missing_a_revocation(
    auth_config_factory: AuthConfigFactory,
    token_settings: TokenSettings,
    subscribed: Subscribe,
    log_of: LogOf,
) -> None:
    config = auth_config_factory()  # port 0: the server binds a free port itself
    server = build_server(config)
    # The restart below binds the port the first server got.
    config = dataclasses.replace(
        config, server=dataclasses.replace(config.server, port=server.port)
    )
    try:
        with grpc.insecure_channel(server.target) as opened:
            stub = auth_stub(opened)
            first_id, first = register_and_login(stub, "alice")
            second_id, second = register_and_login(stub, "bob")
        verifier = subscribed(server.target)
        revoke_user(*log_of(config), first_id)
        assert verifier.wait_for(lambda: verifier.refusal(first.access_token) == "revoked", WITHIN)
        seen = verifier.subscriber.revocations.last_id
        assert seen > 0
    finally:
        server.stop(0)
    assert verifier.wait_for(lambda: not verifier.subscriber.connected.is_set(), 5)

    # Written while no auth server runs: the restarted one must deliver it.
    engine = sqlalchemy.create_engine(config.database_url)
    try:
        log = RevocationLog(
            make_sessions(engine), token_lifetime=token_lifetime_bound(token_settings)
        )
        missed = revoke_user(log, engine, second_id)
    finally:
        engine.dispose()
    assert missed == seen + 1

    restarted = build_server(config)
    try:
        assert verifier.wait_for(lambda: verifier.refusal(second.access_token) == "revoked", 10)
        assert verifier.refusal(first.access_token) == "revoked"
        assert verifier.subscriber.revocations.last_id == missed
    finally:
        restarted.stop(0)


@pytest.mark.parametrize(
    "database_url", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True
)  # two replicas on one server
def test_a_revocation_through_replica_a_reaches_a_subscriber_of_replica_b(
    database_url: str,
    auth_keys_dir: Path,
    auth_config_factory: AuthConfigFactory,
    subscribed: Subscribe,
    log_of: LogOf,
) -> None:
    config = auth_config_factory(database_url=database_url)
    replica_a, replica_b = build_server(config), build_server(config)
    try:
        with grpc.insecure_channel(replica_a.target) as opened:
            user_id, login = register_and_login(auth_stub(opened), "alice")
        verifier = subscribed(replica_b.target)
        assert verifier.refusal(login.access_token) is None

        revoke_user(*log_of(config), user_id)

        assert verifier.wait_for(lambda: verifier.refusal(login.access_token) == "revoked", WITHIN)
    finally:
        replica_a.stop(0)
        replica_b.stop(0)


def test_a_silent_feed_is_trusted_up_to_the_bound_and_refused_past_it(
    auth_config_factory: AuthConfigFactory,
    subscribed: Subscribe,
) -> None:
    server = build_server(auth_config_factory())
    clock = ManualClock()
    bound = RevocationSettings(max_staleness_seconds=30.0)
    try:
        with grpc.insecure_channel(server.target) as opened:
            _, login = register_and_login(auth_stub(opened), "alice")
        verifier = subscribed(server.target, revocation=bound, clock=clock)
        assert verifier.refusal(login.access_token) is None
    finally:
        server.stop(0)
    assert verifier.wait_for(lambda: not verifier.subscriber.connected.is_set(), 5)

    clock.now += 29.0
    assert verifier.refusal(login.access_token) is None  # within the bound: still accepted
    assert verifier.subscriber.revocations.current()
    clock.now += 2.0
    with pytest.raises(RevocationsUnavailable):
        verifier.verifier.verify(login.access_token)
    assert not verifier.subscriber.revocations.current()


def test_a_key_removed_from_the_keys_folder_is_refused_within_2s(
    auth_server: AuthServer,
    auth_keys_dir: Path,
    stub: Any,
    subscribed: Subscribe,
) -> None:
    _, old_login = register_and_login(stub, "alice")
    old_kid = jwt.get_unverified_header(old_login.access_token)["kid"]
    keys_dir = auth_keys_dir
    kids_before = KeyRing.load(keys_dir, generate_if_empty=False).kids
    generate_key_file(keys_dir)
    # SIGHUP's handler: reload now (the new key signs; the old one still verifies).
    auth_server.signal_handlers[signal.SIGHUP]()
    wait_until(
        lambda: len(stub.GetJwks(auth_pb2.GetJwksRequest()).keys) == len(kids_before) + 1,
        within=WITHIN,
        what="the new key to be loaded",
    )
    new_login = stub.Login(
        auth_pb2.LoginRequest(username="alice", password="correct horse battery staple"),
        timeout=TIMEOUT,
    )
    verifier = subscribed(auth_server.target)
    assert verifier.refusal(old_login.access_token) is None
    assert verifier.refusal(new_login.access_token) is None

    # The default AUTH_KEYS_RELOAD_SECONDS is 30: the feed notices the deletion itself.
    (keys_dir / "test-key.pem").unlink()
    removed_at = time.monotonic()

    assert verifier.wait_for(lambda: verifier.refusal(old_login.access_token) is not None, WITHIN)
    assert time.monotonic() - removed_at < WITHIN
    assert verifier.refusal(new_login.access_token) is None
    # Dropped at once by the key set in the feed's status; revoked for good by the log's row.
    assert verifier.wait_for(
        lambda: verifier.subscriber.revocations.is_key_revoked(old_kid), WITHIN
    )
    # A verifier that starts later learns it from the snapshot.
    late = subscribed(auth_server.target)
    assert late.refusal(old_login.access_token) is not None


def test_the_feed_refuses_more_subscribers_than_half_the_server_threads(
    auth_server: AuthServer, channel: grpc.Channel
) -> None:
    stub = revocation_pb2_grpc.RevocationServiceStub(channel)
    streams = [
        stub.WatchRevocations(revocation_pb2.WatchRevocationsRequest(), timeout=TIMEOUT)
        for _ in range(4)  # the fixture's server has 8 threads
    ]
    try:
        for stream in streams:
            assert next(stream).WhichOneof("event") == "status"
        extra = stub.WatchRevocations(revocation_pb2.WatchRevocationsRequest(), timeout=TIMEOUT)
        with pytest.raises(grpc.RpcError) as raised:
            next(extra)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for stream in streams:
            stream.cancel()


def test_the_feed_carries_only_ids_and_times(
    auth_server: AuthServer,
    auth_keys_dir: Path,
    channel: grpc.Channel,
    auth_log: AuthLog,
) -> None:
    log, engine = auth_log
    revoke_user(log, engine, "user-1")
    stub = revocation_pb2_grpc.RevocationServiceStub(channel)
    stream = stub.WatchRevocations(revocation_pb2.WatchRevocationsRequest(), timeout=TIMEOUT)
    try:
        # In the snapshot, or streamed just after it if the poller had not read it yet.
        events = iter(stream)
        revocation = next(e for e in events if e.WhichOneof("event") == "revocation")
        status = next(events)
    finally:
        stream.cancel()
    assert revocation.revocation.subject == "user-1"
    assert revocation.revocation.kind == revocation_pb2.REVOCATION_KIND_USER
    assert list(status.status.kids) == list(KeyRing.load(auth_keys_dir).kids)
    assert status.status.last_id == revocation.revocation.id
    assert list(revocation.revocation.roles) == []  # role names come with kind ROLES only


def test_a_role_removal_is_sent_with_the_roles_left(
    auth_server: AuthServer, channel: grpc.Channel, auth_log: AuthLog
) -> None:
    log, engine = auth_log
    with make_sessions(engine).begin() as session:
        log.revoke_roles(
            session,
            "user-1",
            frozenset({"support", "billing"}),
            reason="test",
            at=datetime.now(UTC),
        )
    stub = revocation_pb2_grpc.RevocationServiceStub(channel)
    stream = stub.WatchRevocations(revocation_pb2.WatchRevocationsRequest(), timeout=TIMEOUT)
    try:
        revocation = next(e for e in stream if e.WhichOneof("event") == "revocation").revocation
    finally:
        stream.cancel()
    assert revocation.kind == revocation_pb2.REVOCATION_KIND_ROLES
    assert revocation.subject == "user-1"
    assert list(revocation.roles) == ["billing", "support"]


def test_the_profile_service_refuses_a_revoked_users_token_within_2s(
    auth_server: AuthServer,
    stub: Any,
    profile_server_factory: ProfileServerFactory,
    database_url: str,
    auth_log: AuthLog,
) -> None:
    from authgate.profile.v1 import profile_pb2, profile_pb2_grpc

    user_id, login = register_and_login(stub, "alice")
    profile = profile_server_factory(database_url, auth_target=auth_server.target)
    metadata = (("authorization", f"Bearer {login.access_token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{profile.port}") as opened:
        profiles: Any = profile_pb2_grpc.ProfileServiceStub(opened)
        request = profile_pb2.GetProfileRequest()
        assert profiles.GetProfile(request, metadata=metadata, timeout=TIMEOUT).user_id == user_id

        revoke_user(*auth_log, user_id)
        revoked_at = time.monotonic()

        code = grpc.StatusCode.OK
        while code == grpc.StatusCode.OK and time.monotonic() - revoked_at < WITHIN:
            try:
                profiles.GetProfile(request, metadata=metadata, timeout=TIMEOUT)
            except grpc.RpcError as exc:
                code = exc.code()
    assert code == grpc.StatusCode.UNAUTHENTICATED
