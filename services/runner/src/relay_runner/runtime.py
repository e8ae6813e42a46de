"""Everything a runner process shares between its runs, created at start-up.

Clients are created here (never at import) and closed in `close()`. None of
them connects when created, so a runner starts, and answers /healthz, while
Redis or state are down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis

from relay_agent.providers import AnthropicProvider, OpenAIProvider, Provider
from relay_agent.tools import ToolRegistry, default_registry, load_plugins
from relay_core.capacity import PoolCapacity
from relay_core.models import ModelCatalog
from relay_core.redis import create_redis
from relay_core.rediscalls import RedisCalls
from relay_core.state_client import StateClient
from relay_runner.breaker import BreakerPolicy, CircuitBreakers
from relay_runner.budget import Budget
from relay_runner.config import RunnerSettings
from relay_runner.gate import BreakerGate
from relay_runner.lease import LeaseKeeper
from relay_runner.observe import CallMetrics
from relay_runner.publish import FencedPublisher
from relay_runner.spend import ledger_from
from relay_runner.stopflags import StopFlags
from relay_runner.streams import Queue

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: RunnerSettings
    redis: Redis
    blocking: Redis  # XREADGROUP BLOCK: its socket timeout exceeds the block
    state: StateClient
    keeper: LeaseKeeper
    queue: Queue
    catalog: ModelCatalog
    registry: ToolRegistry
    providers: dict[str, Provider]
    gate: BreakerGate
    capacity: PoolCapacity
    budget: Budget
    publisher: FencedPublisher  # every run's event writes, batched
    stops: StopFlags  # every run's cancel flag and the kill switch, polled at once
    call_metrics: CallMetrics  # each model call's status class and cost, in metrics
    calls: RedisCalls  # every run's small Redis calls, coalesced
    # Set at the drain deadline: cancelled runs hand themselves back to the queue.
    releasing: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    force_stop: asyncio.Event = field(default_factory=asyncio.Event)  # a second signal

    @property
    def pool(self) -> str:
        return self.settings.runner_pool

    @classmethod
    def create(cls, settings: RunnerSettings) -> Runtime:
        catalog = ModelCatalog.load(settings.models_file)
        registry = default_registry(load_plugins(settings.extra_tools))
        timeout = settings.dependency_timeout_s
        redis = create_redis(
            settings.redis_url,
            timeout_s=timeout,
            max_connections=64 + 4 * settings.runner_concurrency,
            mode=settings.redis_mode,
        )
        blocking = create_redis(
            settings.redis_url,
            timeout_s=settings.block_ms / 1000 + timeout,
            max_connections=4,
            mode=settings.redis_mode,
        )
        keeper = LeaseKeeper(
            settings.redis_url,
            mode=settings.redis_mode,
            ttl_s=settings.lease_ttl_s,
            pool=settings.runner_pool,
            consumer=settings.consumer_name,
            timeout_s=timeout,
        )
        state = StateClient(
            settings.state_url, settings.internal_token.get_secret_value(), timeout_s=timeout
        )
        calls = RedisCalls(redis, closed="the runner's Redis calls were closed")
        return cls(
            settings=settings,
            redis=redis,
            blocking=blocking,
            state=state,
            keeper=keeper,
            queue=Queue(
                redis, pool=settings.runner_pool, consumer=settings.consumer_name, calls=calls
            ),
            catalog=catalog,
            registry=registry,
            providers=_providers(settings),
            gate=BreakerGate(CircuitBreakers(redis, _breaker_policy(settings), calls=calls)),
            capacity=PoolCapacity(redis, settings.runner_pool),
            budget=Budget(redis, ledger=ledger_from(state), calls=calls),
            publisher=FencedPublisher(
                redis, pool=settings.runner_pool, linger_s=settings.event_linger_s
            ),
            stops=StopFlags(redis, interval_s=settings.cancel_check_s, calls=calls),
            call_metrics=CallMetrics(settings.runner_pool),
            calls=calls,
        )

    async def close(self) -> None:
        self.keeper.stop()
        await self.stops.aclose()
        await self.publisher.aclose()
        await self.calls.aclose()
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        await self.state.aclose()
        await self.redis.aclose()
        await self.blocking.aclose()


def _breaker_policy(settings: RunnerSettings) -> BreakerPolicy:
    return BreakerPolicy(
        window_s=settings.breaker_window_s,
        min_calls=settings.breaker_min_calls,
        failure_rate=settings.breaker_failure_rate,
        open_s=settings.breaker_open_s,
    )


def _providers(settings: RunnerSettings) -> dict[str, Provider]:
    timeout = settings.model_timeout_s
    return {
        "anthropic": AnthropicProvider.create(
            base_url=settings.anthropic_base_url,
            api_key=settings.anthropic_api_key.get_secret_value(),
            timeout_s=timeout,
        ),
        "openai": OpenAIProvider.create(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            timeout_s=timeout,
        ),
    }
