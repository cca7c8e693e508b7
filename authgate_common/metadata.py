"""Names of the gRPC metadata keys that carry identity and tracing between processes."""

AUTHORIZATION = "authorization"
USER_ID = "x-user-id"
USERNAME = "x-username"
REQUEST_ID = "x-request-id"
# The HTTP client's address (by the gateway's trusted-proxy rule) and User-Agent, set only
# by the gateway, for the audit log. A direct gRPC caller's values are taken as sent.
CLIENT_IP = "x-client-ip"
CLIENT_USER_AGENT = "x-client-user-agent"
RETRY_AFTER = "retry-after"  # trailer: seconds before a refused call is worth retrying
