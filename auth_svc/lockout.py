"""Exponential temporary lockout after repeated failed logins: the policy, free of storage.

The failure that reaches `threshold` locks the account for `base_seconds`; each
further failure (possible only once a lock has run out) doubles the lock, up to
`max_seconds`. A successful login resets the count. The repository applies the
policy atomically in the database (see UserRepository.claim_login_attempt).
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate_common.config import ConfigError


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    base_seconds: int = 30
    max_seconds: int = 900

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ConfigError("AUTH_LOCKOUT_THRESHOLD must be at least 1")
        if self.base_seconds < 1:
            raise ConfigError("AUTH_LOCKOUT_BASE_SECONDS must be at least 1")
        if self.max_seconds < self.base_seconds:
            raise ConfigError("AUTH_LOCKOUT_MAX_SECONDS must be at least AUTH_LOCKOUT_BASE_SECONDS")

    def lock_seconds(self, failures: int) -> int:
        """How long the account is locked once it has `failures` failures in a row (0: not)."""
        if failures < self.threshold:
            return 0
        doublings = failures - self.threshold
        if doublings >= self.max_seconds.bit_length():  # 2**doublings * base > max surely
            return self.max_seconds
        return min(self.base_seconds << doublings, self.max_seconds)

    def escalation(self) -> list[tuple[int, int]]:
        """(failures, lock seconds) from the threshold up to the first capped step.

        Every count past the last entry locks for `max_seconds`; the list is short
        (about log2(max/base) + 1 entries), so it fits in one SQL CASE.
        """
        steps = []
        failures = self.threshold
        while True:
            seconds = self.lock_seconds(failures)
            steps.append((failures, seconds))
            if seconds >= self.max_seconds:
                return steps
            failures += 1
