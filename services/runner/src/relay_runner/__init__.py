"""relay-runner: executes agent runs from a Redis stream queue.

Module map (one concern each):
- `config`: settings (the only reader of the environment).
- `runtime`: clients and shared objects, created at start-up, closed at exit.
- `worker`: the read loop, concurrency slots, orphan reclaiming, drain.
- `execution`: one queue entry from claim to ack (the agent loop, providers
  and tools live in the `relay_agent` package).
- `lease`: the heartbeat thread that keeps this process's leases alive.
- `streams`: Redis stream operations (queue group, fenced event writes).
- `publish`: the fenced event writes of all runs, batched into few script calls.
- `stopflags`: every run's cancel flag and the kill switch, read in one poll.
- `breaker`: the circuit breaker per (provider, model), shared through Redis.
- `gate`: those breakers as the agent loop's model gate (`relay_agent.ModelGate`).
- `budget`: the cost ceilings (run, user per day), reserve then settle in Redis.
- `spend`: that budget as the agent loop's spend guard (`relay_agent.SpendGuard`).
- `health`, `metrics`: /healthz, /readyz, /metrics.
- `main`: the process: worker and health server in one loop, signals.
"""
