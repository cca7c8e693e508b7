"""Starts the three authgate processes together: `make run` and the end-to-end tests."""
