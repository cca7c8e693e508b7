"""Alembic's entry point for auth_svc's history; the shared runner does the work."""

from authgate_common.migrations import run_env

run_env()
