"""Names of the gRPC metadata keys that carry identity and tracing between processes."""

AUTHORIZATION = "authorization"
USER_ID = "x-user-id"
USERNAME = "x-username"
REQUEST_ID = "x-request-id"
RETRY_AFTER = "retry-after"  # trailer: seconds before a refused call is worth retrying
