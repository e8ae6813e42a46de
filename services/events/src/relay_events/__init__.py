"""Relay's events service: resumable SSE fan-out of run events (`relay-events`)."""
