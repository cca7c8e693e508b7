"""The auth service's own counters, read off the outcome of its RPCs."""

from __future__ import annotations

import grpc
from authgate.auth.v1 import auth_pb2
from prometheus_client import CollectorRegistry, Counter

from auth_svc.service import LOCK_ENGAGED, LOCK_REFUSED

_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
LOGIN_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Login'].name}"
REGISTER_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Register'].name}"

LOGIN_OK = "ok"
# Wrong password, unknown user and disabled user alike: the service cannot say which.
LOGIN_FAILED = "failed"
# Anything else: a malformed request or an unavailable database.
LOGIN_ERROR = "error"


class AuthMetrics:
    """Logins by result and registrations, as an RpcObserver of the auth server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter(
            "authgate_auth_logins",
            "Login calls answered, by result (ok, failed: bad credentials, error).",
            ("result",),
            registry=registry,
        )
        self.registrations = Counter(
            "authgate_auth_registrations", "Users registered.", registry=registry
        )
        self.lockouts = Counter(
            "authgate_auth_lockouts",
            "Lockout events: engaged (failures locked an account), refused (a login met a lock).",
            ("event",),
            registry=registry,
        )
        for result in (LOGIN_OK, LOGIN_FAILED, LOGIN_ERROR):
            self.logins.labels(result)  # present at 0 from the start
        for event in (LOCK_ENGAGED, LOCK_REFUSED):
            self.lockouts.labels(event)

    def lockout(self, event: str) -> None:
        self.lockouts.labels(event).inc()

    def observe(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        if full_method == LOGIN_METHOD:
            if code == grpc.StatusCode.OK:
                result = LOGIN_OK
            elif code == grpc.StatusCode.UNAUTHENTICATED:
                result = LOGIN_FAILED
            else:
                result = LOGIN_ERROR
            self.logins.labels(result).inc()
        elif full_method == REGISTER_METHOD and code == grpc.StatusCode.OK:
            self.registrations.inc()
