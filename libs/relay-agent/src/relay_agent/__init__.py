"""relay-agent: the agent loop, the model providers and the tools; what a user extends.

Module map (one concern each):
- `loop`: `Agent`, the loop itself (model turn, tools, checkpoint, repeat).
- `checkpoints`: what the loop records and how a later attempt resumes from it.
- `guards`: the interfaces the caller lends the loop (stop, model gate, spend).
- `providers`: the `Provider` interface and the Anthropic and OpenAI providers.
- `tools`: `Tool`, the registry, the built-in tools and the plugin loader.

Why it depends on relay-core, and on nothing else of Relay: the loop speaks
two wire contracts that other services read, the event model
(`relay_core.events`: what it yields is what clients get over SSE) and the
model catalog (`relay_core.models`: the gateway validates a run's model
against the same `ModelSpec`). It imports no Redis, no HTTP server and no
service; Relay's runner is one caller of it. The extension API (a tool, a
provider) is in this package's README.md.
"""

from relay_agent.checkpoints import (
    UNKNOWN_OUTCOME,
    CheckpointFn,
    CheckpointLike,
    dedupe_key,
    resume_step,
)
from relay_agent.guards import CANCEL_REASONS, BudgetExceeded, ModelGate, SpendGuard, StopFn
from relay_agent.loop import Agent, AgentInputs, AgentResult, TranscriptMessage

__all__ = [
    "CANCEL_REASONS",
    "UNKNOWN_OUTCOME",
    "Agent",
    "AgentInputs",
    "AgentResult",
    "BudgetExceeded",
    "CheckpointFn",
    "CheckpointLike",
    "ModelGate",
    "SpendGuard",
    "StopFn",
    "TranscriptMessage",
    "dedupe_key",
    "resume_step",
]
