"""Model providers behind one interface (`Provider`), and their construction.

`AnthropicProvider` and `OpenAIProvider` wrap the official SDK clients, which
the caller creates at start-up (with `max_retries=0`: retries and fallbacks
are the agent loop's decision) and closes on shutdown.
"""

from relay_agent.providers.anthropic_provider import AnthropicProvider
from relay_agent.providers.base import (
    Provider,
    ProviderError,
    TextDelta,
    ToolCall,
    TurnDone,
    TurnEvent,
)
from relay_agent.providers.openai_provider import OpenAIProvider

__all__ = [
    "AnthropicProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "TextDelta",
    "ToolCall",
    "TurnDone",
    "TurnEvent",
]
