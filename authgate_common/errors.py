"""Domain errors: plain exceptions that the edges (gRPC, HTTP) translate into statuses.

The message of a domain error is written for the client and is safe to show;
anything else that escapes a handler is logged and answered with a generic error.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors whose message may be shown to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request breaks a rule of the contract."""


class Unauthenticated(DomainError):
    """Credentials or token missing, wrong, expired or revoked."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""


class NotFound(DomainError):
    """The thing asked for does not exist."""


class AlreadyExists(DomainError):
    """The thing to create exists already."""


class ResourceExhausted(DomainError):
    """Too many requests; try again later (after retry_after_seconds, when known)."""

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(DomainError):
    """A dependency (database, another service) cannot be reached right now."""
