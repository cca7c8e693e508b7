"""Exponential temporary lockout after repeated failed logins: the policy, free of storage.

Failures throttle the client that makes them: they are counted per account AND client
address. The failure that reaches `threshold` locks that account for that address for
`base_seconds`; each further failure (possible only once a lock has run out) doubles
the lock, up to `max_seconds`. A successful login from the address resets its count.
The owner logging in from elsewhere is not affected.

Since one address can make only a few failures per lock period, many failures on one
account within `account_window_seconds` mean many addresses (a distributed attack):
`account_threshold` of them lock the account for every address for
`account_lock_seconds`.

The repository applies the policy atomically in the database (see
UserRepository.claim_login_attempt).
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate_common.config import ConfigError


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    base_seconds: int = 30
    max_seconds: int = 900
    account_threshold: int = 50
    account_window_seconds: int = 900
    account_lock_seconds: int = 900

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ConfigError("AUTH_LOCKOUT_THRESHOLD must be at least 1")
        if self.base_seconds < 1:
            raise ConfigError("AUTH_LOCKOUT_BASE_SECONDS must be at least 1")
        if self.max_seconds < self.base_seconds:
            raise ConfigError("AUTH_LOCKOUT_MAX_SECONDS must be at least AUTH_LOCKOUT_BASE_SECONDS")
        if self.account_threshold < 1:
            raise ConfigError("AUTH_ACCOUNT_LOCK_THRESHOLD must be at least 1")
        if self.account_window_seconds < 1 or self.account_lock_seconds < 1:
            raise ConfigError(
                "AUTH_ACCOUNT_LOCK_WINDOW_SECONDS and AUTH_ACCOUNT_LOCK_SECONDS must be at least 1"
            )

    def lock_seconds(self, failures: int) -> int:
        """How long the account is locked once it has `failures` failures in a row (0: not)."""
        if failures < self.threshold:
            return 0
        doublings = failures - self.threshold
        if doublings >= self.max_seconds.bit_length():  # 2**doublings * base > max surely
            return self.max_seconds
        return min(self.base_seconds << doublings, self.max_seconds)

    def escalation(self) -> list[tuple[int, int]]:
        """(failures, lock seconds) from the threshold up to the first capped step; every
        count past the last entry locks for `max_seconds`."""
        steps = []
        failures = self.threshold
        while True:
            seconds = self.lock_seconds(failures)
            steps.append((failures, seconds))
            if seconds >= self.max_seconds:
                return steps
            failures += 1


# An attempt counted in flight for longer than this was lost (its process died): it no
# longer holds a place. Far above the slowest password check.
IN_FLIGHT_EXPIRY_SECONDS = 60
