"""`python -m profile_svc`: the profile gRPC service, configured from the environment."""

from __future__ import annotations

import sys

from authgate_common import service
from profile_svc.config import ProfileConfig
from profile_svc.server import NAME, build_server


def main() -> int:
    return service.main(NAME, ProfileConfig.from_env, build_server)


if __name__ == "__main__":
    sys.exit(main())
