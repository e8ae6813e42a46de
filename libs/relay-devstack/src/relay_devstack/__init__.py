"""Relay's local stack: embedded real Redis and Postgres, and the process
supervisor behind `make dev` and the test harness (one code path for both)."""
