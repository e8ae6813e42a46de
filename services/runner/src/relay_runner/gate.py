"""The agent loop's model gate, backed by the shared circuit breakers.

One breaker per (provider, upstream model), shared by every runner through
Redis (`relay_runner.breaker`). If Redis cannot be asked, the gate lets the call
through: the breakers are an optimisation of failure, never a new one.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from relay_core.models import ModelSpec
from relay_runner.breaker import STATE_VALUES, CircuitBreakers
from relay_runner.metrics import BREAKER_STATE

log = logging.getLogger(__name__)


class BreakerGate:
    def __init__(self, breakers: CircuitBreakers) -> None:
        self._breakers = breakers

    async def allow(self, spec: ModelSpec) -> bool:
        try:
            allowed = await self._breakers.allow(spec.provider, spec.upstream_model)
        except RedisError:
            return True
        if not allowed:
            _export(spec, "open")
            log.info("circuit open; model skipped", extra={"model": spec.name})
        return allowed

    async def record(self, spec: ModelSpec, *, ok: bool) -> None:
        try:
            state = await self._breakers.record(spec.provider, spec.upstream_model, ok=ok)
        except RedisError:
            return
        _export(spec, state)
        if state == "open" and not ok:
            log.warning("circuit opened", extra={"model": spec.name})


def _export(spec: ModelSpec, state: str) -> None:
    BREAKER_STATE.labels(provider=spec.provider, model=spec.upstream_model).set(STATE_VALUES[state])
