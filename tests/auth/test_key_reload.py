"""Rotating signing keys without a restart: the reloader, the prune command, SIGHUP."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc

from auth_svc import key_reload, keys
from auth_svc.config import AuthConfig
from auth_svc.key_reload import KeyReloader
from auth_svc.keys import KeyRing, generate_key_file, retired_key_files
from auth_svc.server import build_server
from authgate_common.config import ConfigError, Env
from tests.auth.conftest import PASSWORD
from tests.fixtures.auth_fixtures import AuthConfigFactory
from tests.harness import real_stack, wait_until

STAMP = 1_700_000_000  # file times the tests set, so "newest" never depends on timing


def _set_mtime(path: Path, seconds: float) -> Path:
    os.utime(path, (seconds, seconds))
    return path


def _new_key(keys_dir: Path, mtime: float) -> Path:
    return _set_mtime(generate_key_file(keys_dir), mtime)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    _new_key(tmp_path, STAMP)
    return tmp_path


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths the reloader parses, in order."""
    seen: list[Path] = []
    real = keys.load_key

    def counting(path: Path) -> Any:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(key_reload, "load_key", counting)
    return seen


def test_unchanged_folder_parses_nothing(keys_dir: Path, parses: list[Path]) -> None:
    ring = KeyRing.load(keys_dir)
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0)

    assert reloader.check() is False
    assert reloader.check() is False
    assert parses == []


def test_a_new_key_signs_and_the_old_stays_published(keys_dir: Path, parses: list[Path]) -> None:
    ring = KeyRing.load(keys_dir)
    old_kid = ring.signer.kid
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0)
    new_file = _new_key(keys_dir, STAMP + 60)

    assert reloader.check() is True

    assert ring.signer.path == new_file
    assert [jwk["kid"] for jwk in ring.jwks("RS256")] == [ring.signer.kid, old_kid]
    assert parses == [new_file]  # the old file is not parsed again


def test_a_bad_new_file_is_logged_and_ignored(
    keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ring = KeyRing.load(keys_dir)
    before = ring.kids
    junk = keys_dir / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n")
    _set_mtime(junk, STAMP + 60)
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0)

    assert reloader.check() is False

    assert ring.kids == before  # the old key keeps signing
    assert "junk.pem is not an unencrypted PEM private key" in caplog.text
    assert "SECRETSTUFF" not in caplog.text


def test_a_file_fixed_after_a_bad_write_is_picked_up(keys_dir: Path) -> None:
    ring = KeyRing.load(keys_dir)
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0)
    half_written = keys_dir / "next.pem"
    half_written.write_text("-----BEGIN PRIVATE KEY-----\n")
    _set_mtime(half_written, STAMP + 60)
    assert reloader.check() is False

    complete = generate_key_file(keys_dir / "staging")
    os.replace(complete, half_written)
    _set_mtime(half_written, STAMP + 61)

    assert reloader.check() is True
    assert ring.signer.path == half_written


def test_a_removed_file_retires_its_key(keys_dir: Path) -> None:
    old_file = next(keys_dir.glob("*.pem"))
    _new_key(keys_dir, STAMP + 60)
    ring = KeyRing.load(keys_dir)
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0)
    old_file.unlink()

    assert reloader.check() is True
    assert len(ring.kids) == 1


def test_an_emptied_folder_keeps_the_loaded_keys(keys_dir: Path) -> None:
    ring = KeyRing.load(keys_dir)
    before = ring.kids
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0)
    for path in keys_dir.glob("*.pem"):
        path.unlink()

    assert reloader.check() is False
    assert ring.kids == before


def test_the_background_thread_polls_the_folder(keys_dir: Path) -> None:
    ring = KeyRing.load(keys_dir)
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0.05)
    reloader.start()
    try:
        new_file = _new_key(keys_dir, STAMP + 60)
        wait_until(lambda: ring.signer.path == new_file)
    finally:
        reloader.stop()


class _ParkingEvent(threading.Event):
    """An Event that records how long each waiter means to wait, and says one is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []
        self.parked = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.parked.set()
        return super().wait(timeout)


def test_without_polling_a_trigger_reloads(keys_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing.load(keys_dir)
    reloader = KeyReloader(ring, keys_dir, interval_seconds=0)
    wake = _ParkingEvent()
    monkeypatch.setattr(reloader._loop, "_wake", wake)
    reloader.start()
    try:
        new_file = _new_key(keys_dir, STAMP + 60)
        # The thread is parked with no timeout: only a trigger makes it look again.
        wait_until(wake.parked.is_set, what="the reloader waiting")
        assert wake.timeouts == [None]
        assert ring.signer.path != new_file  # nobody looked
        reloader.trigger()
        wait_until(lambda: ring.signer.path == new_file)
    finally:
        reloader.stop()


def test_running_server_signs_with_a_rotated_key_and_publishes_both(
    auth_config_factory: AuthConfigFactory,
) -> None:
    # Activation at once: this test is about reloading (publish-before-sign: test_keys).
    config = auth_config_factory(keys_reload_seconds=0.05, key_activation_seconds=0)
    server = build_server(config)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub: Any = auth_pb2_grpc.AuthServiceStub(channel)
            stub.Register(auth_pb2.RegisterRequest(username="alice", password=PASSWORD))
            [old] = stub.GetJwks(auth_pb2.GetJwksRequest()).keys
            new_file = _new_key(config.keys_dir, time.time() + 60)  # newer than the fixture key

            wait_until(lambda: len(stub.GetJwks(auth_pb2.GetJwksRequest()).keys) == 2)
            login = stub.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
            kids = [key.kid for key in stub.GetJwks(auth_pb2.GetJwksRequest()).keys]

        assert kids[1] == old.kid
        assert jwt.get_unverified_header(login.access_token)["kid"] == kids[0] != old.kid
        assert new_file.exists()
    finally:
        server.stop(0)


def test_sighup_reloads_at_once_without_polling(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"  # where real_stack points AUTH_KEYS_DIR
    with real_stack(tmp_path, only=("auth",), extra_env={"AUTH_KEYS_RELOAD_SECONDS": "0"}) as stack:
        process = stack.process("auth")
        with grpc.insecure_channel(stack.auth_target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub: Any = auth_pb2_grpc.AuthServiceStub(channel)
            assert len(stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5).keys) == 1
            assert keys.main(["rotate", "--keys-dir", str(keys_dir)]) == 0

            process.send_signal(signal.SIGHUP)

            wait_until(lambda: len(stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5).keys) == 2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    stderr = stack.log_path("auth").read_text()
    assert process.returncode == 0, stderr
    assert '"reloaded signing keys"' in stderr


# --- prune ------------------------------------------------------------------------------


def test_prune_selects_keys_retired_longer_ago_than_asked(tmp_path: Path) -> None:
    first = _new_key(tmp_path, 1_000)
    _new_key(tmp_path, 2_000)  # retired the first at 2000
    _new_key(tmp_path, 3_000)  # retired the second at 3000; signs

    assert retired_key_files(tmp_path, older_than_seconds=500, now=2_600) == [first]
    assert retired_key_files(tmp_path, older_than_seconds=500, now=10_000)[-1].exists()
    assert len(retired_key_files(tmp_path, older_than_seconds=500, now=10_000)) == 2


def test_prune_never_deletes_the_signing_key(tmp_path: Path) -> None:
    _new_key(tmp_path, 1_000)

    assert retired_key_files(tmp_path, older_than_seconds=0, now=10**10) == []


def test_prune_command_deletes_and_dry_run_only_tells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _new_key(tmp_path, time.time() - 10_000)
    _new_key(tmp_path, time.time() - 5_000)

    assert keys.main(["prune", "--keys-dir", str(tmp_path), "--dry-run"]) == 0
    assert f"would delete {old}" in capsys.readouterr().out
    assert old.exists()

    assert keys.main(["prune", "--keys-dir", str(tmp_path)]) == 0
    assert f"deleted {old}" in capsys.readouterr().out
    assert not old.exists()
    assert len(list(tmp_path.glob("*.pem"))) == 1


def test_prune_waits_for_the_token_lifetime_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _new_key(tmp_path, time.time() - 10_000)
    _new_key(tmp_path, time.time() - 500)  # retired the old key 500 s ago
    monkeypatch.setenv("AUTH_ACCESS_TOKEN_TTL_SECONDS", "900")

    assert keys.main(["prune", "--keys-dir", str(tmp_path)]) == 0
    assert old.exists()
    assert "no key to retire" in capsys.readouterr().out

    monkeypatch.setenv("AUTH_ACCESS_TOKEN_TTL_SECONDS", "300")
    monkeypatch.setenv("JWT_LEEWAY_SECONDS", "30")
    monkeypatch.setenv("AUTH_KEYS_RELOAD_SECONDS", "30")
    assert keys.main(["prune", "--keys-dir", str(tmp_path)]) == 0
    assert not old.exists()


def test_reload_interval_is_configured() -> None:
    assert AuthConfig.from_env(Env({})).keys_reload_seconds == 30.0
    assert AuthConfig.from_env(Env({"AUTH_KEYS_RELOAD_SECONDS": "0.5"})).keys_reload_seconds == 0.5
    with pytest.raises(ConfigError, match="AUTH_KEYS_RELOAD_SECONDS"):
        AuthConfig.from_env(Env({"AUTH_KEYS_RELOAD_SECONDS": "-1"}))
