"""The key ring: generation, permissions, thumbprints, which key signs, refusing bad keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth_svc import keys
from auth_svc.keys import KeyRing, KeyRingError, generate_key_file, jwk_thumbprint
from tests.fixtures.auth_fixtures import rotate_keys

# RFC 7638 section 3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_E = "AQAB"
RFC7638_KID = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _write_pem(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)
    return path


def _set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, (seconds, seconds))


def test_thumbprint_matches_the_rfc7638_example() -> None:
    assert jwk_thumbprint(RFC7638_E, RFC7638_N) == RFC7638_KID


def test_kid_is_the_thumbprint_of_the_published_jwk(auth_keys_dir: Path) -> None:
    ring = KeyRing.load(auth_keys_dir)
    [jwk] = ring.jwks("RS256")

    assert jwk["kid"] == jwk_thumbprint(jwk["e"], jwk["n"]) == ring.signer.kid
    assert {k: jwk[k] for k in ("kty", "use", "alg", "e")} == {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "e": "AQAB",
    }
    assert set(jwk) == {"kty", "kid", "use", "alg", "n", "e"}


def test_empty_folder_gets_a_generated_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "var" / "keys"

    ring = KeyRing.load(keys_dir)

    [key_file] = list(keys_dir.glob("*.pem"))
    assert ring.signer.path == key_file
    assert ring.signer.private_key.key_size >= 2048


def test_generated_key_file_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    old_umask = os.umask(0o022)
    try:
        key_file = generate_key_file(keys_dir)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert not list(keys_dir.glob(".*.tmp"))


def test_existing_key_is_loaded_not_replaced(auth_keys_dir: Path) -> None:
    first = KeyRing.load(auth_keys_dir)
    second = KeyRing.load(auth_keys_dir)

    assert first.kids == second.kids
    assert len(list(auth_keys_dir.glob("*.pem"))) == 1


def test_newest_file_signs_and_every_key_is_published(tmp_path: Path) -> None:
    older = generate_key_file(tmp_path)
    newer = generate_key_file(tmp_path)
    _set_mtime(older, 1_000)
    _set_mtime(newer, 2_000)

    ring = KeyRing.load(tmp_path)

    assert ring.signer.path == newer
    assert [jwk["kid"] for jwk in ring.jwks("RS256")] == [ring.kids[1], ring.kids[0]]


def test_a_new_key_is_published_at_once_but_signs_only_after_the_activation_delay(
    tmp_path: Path,
) -> None:
    older = generate_key_file(tmp_path)
    newer = generate_key_file(tmp_path)
    _set_mtime(older, 1_000)
    _set_mtime(newer, 2_000)
    now = [2_000.0 + 59]
    ring = KeyRing(
        [keys.load_key(older), keys.load_key(newer)],
        activation_seconds=60,
        clock=lambda: now[0],
    )

    assert ring.signer.path == older
    assert [jwk["kid"] for jwk in ring.jwks("RS256")] == [ring.kids[1], ring.kids[0]]
    now[0] += 1
    assert ring.signer.path == newer


def test_with_every_key_younger_than_the_delay_the_oldest_signs(tmp_path: Path) -> None:
    """A fresh folder (or two keys written together) still signs: with the oldest one."""
    older = generate_key_file(tmp_path)
    newer = generate_key_file(tmp_path)
    _set_mtime(older, 1_000)
    _set_mtime(newer, 1_001)
    ring = KeyRing(
        [keys.load_key(older), keys.load_key(newer)], activation_seconds=60, clock=lambda: 1_002
    )
    assert ring.signer.path == older


def test_equal_mtimes_are_ordered_by_name(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    a = _write_pem(tmp_path / "a.pem", key)
    b = _write_pem(tmp_path / "b.pem", other)
    _set_mtime(a, 5_000)
    _set_mtime(b, 5_000)

    assert KeyRing.load(tmp_path).signer.path == b


def test_files_not_ending_in_pem_are_ignored(auth_keys_dir: Path) -> None:
    (auth_keys_dir / "README.txt").write_text("not a key")
    (auth_keys_dir / ".half-written.pem.tmp").write_text("partial")

    assert len(KeyRing.load(auth_keys_dir).kids) == 1


def test_non_rsa_key_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    _write_pem(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()))

    with pytest.raises(KeyRingError, match=r"ec\.pem is not an RSA key"):
        KeyRing.load(tmp_path)


def test_short_rsa_key_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    _write_pem(tmp_path / "short.pem", weak)

    with pytest.raises(KeyRingError, match="1024-bit RSA key; at least 2048 bits"):
        KeyRing.load(tmp_path)


def test_garbage_key_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n")

    with pytest.raises(KeyRingError) as raised:
        KeyRing.load(tmp_path)
    assert "junk.pem is not an unencrypted PEM private key" in str(raised.value)
    assert "SECRETSTUFF" not in str(raised.value)


def test_encrypted_key_is_refused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "locked.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )

    with pytest.raises(KeyRingError, match="not an unencrypted PEM"):
        KeyRing.load(tmp_path)


def test_keys_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "keys"
    not_a_dir.write_text("")

    with pytest.raises(KeyRingError, match="is not a directory"):
        KeyRing.load(not_a_dir)


def test_rotate_adds_a_signer_and_keeps_the_old_key_published(
    auth_keys_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = KeyRing.load(auth_keys_dir)
    _set_mtime(before.signer.path, 1_000)

    assert keys.main(["rotate", "--keys-dir", str(auth_keys_dir)]) == 0

    after = KeyRing.load(auth_keys_dir)
    assert after.signer.kid != before.signer.kid
    assert set(after.kids) == {before.signer.kid, after.signer.kid}
    assert after.signer.kid in capsys.readouterr().out


def test_rotate_refuses_a_folder_with_a_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_pem(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()))

    assert keys.main(["rotate", "--keys-dir", str(tmp_path)]) == 2
    assert "not an RSA key" in capsys.readouterr().err
    assert len(list(tmp_path.glob("*.pem"))) == 1


def test_rotate_command_runs_as_a_module_with_auth_keys_dir(tmp_path: Path) -> None:
    result = rotate_keys({"AUTH_KEYS_DIR": str(tmp_path / "keys")})

    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "keys").glob("*.pem"))) == 1
