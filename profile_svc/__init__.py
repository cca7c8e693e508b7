"""The profile service: users' profiles over gRPC, for callers with a verified access token."""
