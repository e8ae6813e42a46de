"""modelsim: a model-provider simulator for Relay's dev stack, tests and load tests.

It speaks the Anthropic Messages API and OpenAI chat completions on the wire,
so Relay reaches it through the official SDKs by base URL. It deliberately
imports nothing from relay_core: it stands alone like a real provider.
"""

from relay_modelsim.app import create_app
from relay_modelsim.config import Settings

__all__ = ["Settings", "create_app"]
