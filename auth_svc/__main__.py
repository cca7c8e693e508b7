"""`python -m auth_svc`: the auth gRPC service, configured from the environment."""

from __future__ import annotations

import sys

from auth_svc.config import AuthConfig
from auth_svc.server import NAME, build_server
from authgate_common import service


def main() -> int:
    return service.main(NAME, AuthConfig.from_env, build_server)


if __name__ == "__main__":
    sys.exit(main())
