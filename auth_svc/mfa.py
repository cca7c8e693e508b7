"""The TOTP second factor: secrets sealed at rest, RFC 6238 codes, recovery codes.

Free of gRPC; storage through MfaRepository. Choices worth knowing:
- Secrets are sealed with AES-256-GCM under a key from the configuration (never the
  database), with the user id as associated data: a dump alone reveals nothing, and a
  ciphertext copied to another user's row does not open.
- A TOTP code is accepted for one time step once: the step is recorded per user by a
  conditional UPDATE that only moves forward, so of two parallel uses one wins.
- Recovery codes are random (50 bits), stored as SHA-256, and deleted when used.
- Errors never carry a secret or a code.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auth_svc.config import AUTH_TOTP_KEY, AUTH_TOTP_KEY_FILE
from authgate_common.config import ConfigError, Env

KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12
# RFC 6238 as DESIGN fixes it: 30 s steps, 6 digits, SHA-1 (pyotp's defaults).
STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_CODE_BYTES = 10  # 16 base32 characters; the first 10 of them are used: 50 bits
_RECOVERY_CODE_LENGTH = 10


class SecretBox:
    """Seals and opens TOTP secrets with AES-GCM, bound to the user they belong to."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"the TOTP key must be {KEY_BYTES} bytes (base64 in its setting)")
        self._aead = AESGCM(key)

    def seal(self, user_id: str, secret: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode("ascii"), user_id.encode("utf-8"))
        return base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, user_id: str, sealed: str) -> str:
        """The secret; ValueError when the ciphertext is not this user's under this key."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            plain = self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], user_id.encode("utf-8")
            )
        except (InvalidTag, binascii.Error) as exc:
            raise ValueError("the TOTP secret does not open with this key") from exc
        return plain.decode("ascii")


def load_totp_key(key_text: str, key_file: Path) -> bytes:
    """The key from its setting's base64 text, else from key_file (generated, 0600, when
    missing), as `make run` does with its signing key."""
    if key_text:
        return _decoded_key(key_text, "AUTH_TOTP_KEY")
    if not key_file.exists():
        _generate_key_file(key_file)
    return _decoded_key(key_file.read_text(encoding="ascii").strip(), str(key_file))


def _decoded_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ConfigError(f"{where}: the TOTP key must be base64 of {KEY_BYTES} bytes") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where}: the TOTP key must be base64 of {KEY_BYTES} bytes")
    return key


def _generate_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii") + "\n"
    # Written whole (0600 from the start) under a temporary name, then linked into place:
    # a concurrent start (replicas on one folder) finds either no file or the whole
    # key, and the first link wins for all.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another start's key is the key
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def new_secret() -> str:
    return pyotp.random_base32()


def otpauth_uri(secret: str, *, username: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=username, issuer_name=issuer
    )


def time_step(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def is_totp_code(code: str) -> bool:
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now, or one either side) whose code this is; None if none."""
    if not is_totp_code(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = time_step(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, in constant time, whichever matches.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def new_recovery_codes() -> list[str]:
    """Codes like 'k3j9d-2mq7x': 10 base32 characters, grouped for reading."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(_RECOVERY_CODE_BYTES)).decode("ascii")
        code = raw[:_RECOVERY_CODE_LENGTH].lower()
        codes.append(f"{code[:5]}-{code[5:]}")
    return codes


def recovery_code_hash(code: str) -> str:
    """SHA-256 of the code's normal form (any case, with or without its dash or spaces)."""
    normal = "".join(code.split()).replace("-", "").lower()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MfaChallenge:
    """The answer of a right password when a second factor is due."""

    mfa_token: str
    expires_in: int
    user_id: str = ""  # for logs only


def main() -> None:
    """Make the configured TOTP key file if it is missing (a deployment's one-shot)."""
    env = Env.from_os()
    load_totp_key(AUTH_TOTP_KEY.read(env) or "", AUTH_TOTP_KEY_FILE.read(env))
