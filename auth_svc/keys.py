"""The RSA signing keys: loaded at start from AUTH_KEYS_DIR, generated there when it has none.

Every `*.pem` in the folder is published in the JWKS; the newest file (by mtime,
then name) signs once it is AUTH_KEY_ACTIVATION_SECONDS old. `python -m auth_svc.keys
rotate` adds a new key that becomes the signer while the old ones stay published, so
tokens they signed keep verifying; the running service picks it up by itself
(auth_svc.key_reload). The delay is the publish-before-sign rule: with several auth
replicas on one keys folder, each publishes a new key before any signs with it, so a
verifier that fetches the JWKS from any replica already knows the new `kid`.
`python -m auth_svc.keys prune` deletes keys that stopped signing so long ago
that every token they signed has expired.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from auth_svc.config import AUTH_KEYS_DIR, key_retirement_seconds
from authgate_common.config import ConfigError, Env

log = logging.getLogger(__name__)

MIN_KEY_BITS = 2048
GENERATED_KEY_BITS = 2048


class KeyRingError(ConfigError):
    """The keys folder cannot be used; the message names the file, never key material."""


def _b64url_uint(value: int) -> str:
    length = max(1, (value.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode("ascii")


def jwk_thumbprint(e: str, n: str) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA JWK: the required members in lexicographic order."""
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """One parsed private key and its public JWK."""

    kid: str
    private_key: rsa.RSAPrivateKey
    path: Path
    # When the key file was written (its mtime): the start of its activation delay.
    published_at: float = 0.0

    @classmethod
    def from_private_key(cls, private_key: rsa.RSAPrivateKey, path: Path) -> SigningKey:
        numbers = private_key.public_key().public_numbers()
        try:
            published_at = path.stat().st_mtime
        except OSError:
            published_at = 0.0
        return cls(
            jwk_thumbprint(_b64url_uint(numbers.e), _b64url_uint(numbers.n)),
            private_key,
            path,
            published_at,
        )

    def public_jwk(self, algorithm: str) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": algorithm,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


class KeyRing:
    """The service's keys, newest last; the newest signs and all are published.

    `replace` swaps the whole set at once (one reference assignment), so a reader
    always sees one consistent set, without a lock; see auth_svc.key_reload.
    """

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        activation_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = _checked(keys)
        self._activation_seconds = activation_seconds
        self._clock = clock

    def replace(self, keys: Sequence[SigningKey]) -> None:
        self._keys = _checked(keys)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return self._keys

    @classmethod
    def load(
        cls, keys_dir: Path, *, generate_if_empty: bool = True, activation_seconds: float = 0.0
    ) -> KeyRing:
        """Parse every key in keys_dir; with none there, generate the first one."""
        paths = key_files(keys_dir)
        if not paths:
            if not generate_if_empty:
                raise KeyRingError(f"no *.pem private key in {keys_dir}")
            paths = [generate_key_file(keys_dir)]
            log.info("generated a signing key", extra={"keys_dir": str(keys_dir)})
        ring = cls([load_key(path) for path in paths], activation_seconds=activation_seconds)
        log.info("loaded signing keys", extra={"kids": ring.kids, "signing_kid": ring.signer.kid})
        return ring

    @property
    def signer(self) -> SigningKey:
        """The newest key published at least the activation delay ago (else the oldest)."""
        if self._activation_seconds <= 0:
            return self._keys[-1]
        now = self._clock()
        for key in reversed(self._keys):
            if now - key.published_at >= self._activation_seconds:
                return key
        return self._keys[0]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(key.kid for key in self._keys)

    def jwks(self, algorithm: str) -> list[dict[str, str]]:
        """The public keys, the signing key first; duplicates (same key twice) once."""
        seen: set[str] = set()
        published = []
        for key in reversed(self._keys):
            if key.kid not in seen:
                seen.add(key.kid)
                published.append(key.public_jwk(algorithm))
        return published


def _checked(keys: Sequence[SigningKey]) -> tuple[SigningKey, ...]:
    if not keys:
        raise KeyRingError("a key ring needs at least one key")
    return tuple(keys)


def key_files(keys_dir: Path) -> list[Path]:
    """The `*.pem` files of keys_dir, oldest first (by mtime, then name): the last one signs."""
    if not keys_dir.exists():
        return []
    if not keys_dir.is_dir():
        raise KeyRingError(f"AUTH_KEYS_DIR {keys_dir} is not a directory")
    try:
        paths = [path for path in keys_dir.glob("*.pem") if path.is_file()]
    except OSError as exc:
        raise KeyRingError(f"cannot read AUTH_KEYS_DIR {keys_dir}: {exc.strerror}") from None
    return sorted(paths, key=lambda path: (path.stat().st_mtime_ns, path.name))


@functools.lru_cache(maxsize=64)
def _parsed_private_key(pem: bytes) -> PrivateKeyTypes:
    """The key a PEM file holds, parsed once per process for the same bytes: parsing checks
    the RSA key's consistency, about 30 ms, and the key ring loads every file again at each
    reload (and each service a test builds loads the test's key again)."""
    return serialization.load_pem_private_key(pem, password=None)


def load_key(path: Path) -> SigningKey:
    """Parse one key file; KeyRingError names the file and the reason, never its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyRingError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        private_key = _parsed_private_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message could quote the file; ours names only the path.
        raise KeyRingError(f"key file {path} is not an unencrypted PEM private key") from None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise KeyRingError(f"key file {path} is not an RSA key (only RSA keys can sign RS256)")
    if private_key.key_size < MIN_KEY_BITS:
        raise KeyRingError(
            f"key file {path} is a {private_key.key_size}-bit RSA key; at least {MIN_KEY_BITS} "
            "bits are required"
        )
    if path.stat().st_mode & 0o077:
        log.warning("a key file is readable by other users", extra={"path": str(path)})
    return SigningKey.from_private_key(private_key, path)


def generate_key_file(keys_dir: Path, *, bits: int = GENERATED_KEY_BITS) -> Path:
    """Write a new RSA private key into keys_dir (0700) as a 0600 file, atomically."""
    if not keys_dir.exists():
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(keys_dir, 0o700)  # mkdir's mode is subject to the umask
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    kid = SigningKey.from_private_key(private_key, keys_dir).kid
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = keys_dir / f"{stamp}-{kid[:12]}.pem"
    temporary = keys_dir / f".{final.name}.tmp"
    # O_EXCL with 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(keys_dir)
    return final


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def retired_key_files(keys_dir: Path, *, older_than_seconds: float, now: float) -> list[Path]:
    """Key files that stopped signing more than older_than_seconds before now.

    A key stops signing when a newer key file appears, so it retired at the mtime
    of the next file in signing order. The signing key itself is never retired.
    """
    paths = key_files(keys_dir)
    return [
        older
        for older, newer in itertools.pairwise(paths)
        if now - newer.stat().st_mtime > older_than_seconds
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_svc.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate", help="add a new signing key; older keys stay published")
    prune = commands.add_parser(
        "prune", help="delete keys that stopped signing long enough ago that their tokens expired"
    )
    for command in (rotate, prune):
        command.add_argument(
            "--keys-dir",
            type=Path,
            default=None,
            help="folder of PEM keys (default: AUTH_KEYS_DIR or var/keys)",
        )
    prune.add_argument(
        "--older-than",
        type=float,
        default=None,
        metavar="SECONDS",
        help="retired longer ago than this (default: AUTH_ACCESS_TOKEN_TTL_SECONDS + "
        "JWT_LEEWAY_SECONDS + AUTH_KEYS_RELOAD_SECONDS + 1)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    args = parser.parse_args(argv)
    try:
        env = Env.from_os()
        keys_dir = args.keys_dir or AUTH_KEYS_DIR.read(env)
        if args.command == "prune":
            older_than = args.older_than
            if older_than is None:
                older_than = key_retirement_seconds(env)
            return _prune(keys_dir, older_than, dry_run=args.dry_run)
        return _rotate(keys_dir)
    except ConfigError as exc:
        print(f"auth_svc.keys: {exc}", file=sys.stderr)
        return 2


def _rotate(keys_dir: Path) -> int:
    if key_files(keys_dir):
        # Refuse to add to a folder the service could not start with.
        KeyRing.load(keys_dir, generate_if_empty=False)
    path = generate_key_file(keys_dir)
    ring = KeyRing.load(keys_dir, generate_if_empty=False)
    if ring.signer.path != path:
        print(
            f"auth_svc.keys: wrote {path}, but {ring.signer.path} is newer (mtime in the future?) "
            "and still signs",
            file=sys.stderr,
        )
        return 1
    print(
        f"new signing key {ring.signer.kid} in {path}; a running auth service publishes it "
        "within AUTH_KEYS_RELOAD_SECONDS (at once on SIGHUP) and signs with it once it is "
        "AUTH_KEY_ACTIVATION_SECONDS old"
    )
    return 0


def _prune(keys_dir: Path, older_than: float, *, dry_run: bool) -> int:
    if older_than < 0:
        raise ConfigError("--older-than must not be negative")
    KeyRing.load(keys_dir, generate_if_empty=False)  # refuse a folder the service cannot use
    retired = retired_key_files(keys_dir, older_than_seconds=older_than, now=time.time())
    for path in retired:
        if not dry_run:
            path.unlink()
        print(f"{'would delete' if dry_run else 'deleted'} {path}")
    if not retired:
        print("no key to retire")
    return 0


if __name__ == "__main__":
    sys.exit(main())
