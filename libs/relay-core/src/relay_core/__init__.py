"""Relay's shared core: only what two or more services share.

Wire contracts: the event model (`events`), Redis key names (`keys`), a
run's Redis protocol (`run_protocol`: queue entry, lease, cancel flag, slots,
`done`, written by state, runner and gateway alike), the
state API models and client (`state_api`, `state_client`), the
model catalog (`models`), SSE framing (`sse`), error bodies (`errors`).
Infrastructure: the settings base (`config`), logging (`logs`), the Redis
client (`redis`), the HTTP server (`httpserver`: the public port under
`connguard`'s deadlines and cap, the `management` port), API key auth
(`auth`, and the failed-authentication throttle `auththrottle`), the per-key
rate limit (`ratelimit`), lifespan background loops (`background`), pool
capacity and its fair share (`capacity`), queue depth (`queue_depth`: state's
gauges, the gateway's admin overview), tracing (`tracing`), the event fan-out
engine (`fanout*`), GC tuning (`gctune`).

A module only one service uses lives in that service (the circuit breaker
and the cost budget are the runner's); the agent loop, the model providers
and the tools are the `relay_agent` package (libs/relay-agent). relay_core
imports no service and no other Relay package.
"""
