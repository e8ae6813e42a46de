"""Deterministic replies: which tools to call, or which words to say.

Both provider modules translate their wire request into the neutral
`Transcript` below, and render the neutral `Reply` back; everything that
decides *what* the simulated model says lives here and is pure.

Decisions:

- Determinism: words are drawn by a `random.Random` seeded from sha256 of the
  model name and the request's `messages` JSON (canonical form). `stream` is
  not part of the seed, so the streaming and non-streaming replies to the same
  request are identical, and so are tool-call ids.
- A token is a word plus its trailing whitespace, so concatenated deltas are
  exactly the reply text, and `output_tokens` is the number of deltas.
- The directive comes from the most recent user turn that has text (a user turn
  holding only tool results is the runner answering our tool calls). Tool
  rounds already done = user turns from that turn on that carry tool results.
- The final answer quotes every tool result received since that turn,
  verbatim, in order ("Tool calculator returned 4. "), then the generated words.
  Those quoted words are tokens too, so `max_tokens` can cut them.
- Tool-call arguments are streamed in whitespace-delimited fragments; each
  fragment, plus one for the call itself, counts as an output token.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from relay_modelsim.directives import Directive, find_directive

StopReason = Literal["end_turn", "max_tokens", "tool_use"]

VOCABULARY = (
    "agent", "alpha", "answer", "batch", "beacon", "bridge", "cache", "canal", "cedar",
    "circuit", "cloud", "comet", "delta", "drift", "echo", "ember", "field", "flux",
    "garden", "harbor", "helix", "island", "lantern", "ledger", "matrix", "meadow",
    "nimbus", "orbit", "packet", "pixel", "prism", "quartz", "queue", "relay", "river",
    "signal", "spark", "stream", "summit", "token", "vector", "willow",
)  # fmt: skip

_TOKEN = re.compile(r"\s*\S+\s*")


@dataclass(frozen=True)
class ToolUse:
    """A tool call found in an assistant turn of the request."""

    call_id: str
    name: str


@dataclass(frozen=True)
class ToolResult:
    """A tool result found in a user turn (OpenAI `tool` messages are folded in)."""

    call_id: str
    content: str


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str = ""
    tool_uses: tuple[ToolUse, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """A provider-neutral view of one request."""

    model: str
    turns: tuple[Turn, ...]
    seed: bytes
    input_tokens: int
    max_tokens: int | None
    stream: bool
    include_usage: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A tool call the simulated model makes; `key` is prefixed per provider."""

    key: str
    name: str
    args: dict[str, Any]
    fragments: tuple[str, ...]

    @property
    def args_json(self) -> str:
        return "".join(self.fragments)


@dataclass(frozen=True)
class Reply:
    text_tokens: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    stop_reason: StopReason

    @property
    def text(self) -> str:
        return "".join(self.text_tokens)

    @property
    def output_tokens(self) -> int:
        calls = sum(1 + len(c.fragments) for c in self.tool_calls)
        return len(self.text_tokens) + calls


def seed_of(model: str, messages: Any) -> bytes:
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{model}\n{canonical}".encode()).digest()


def count_input_tokens(texts: Iterable[str]) -> int:
    return sum(len(t.split()) for t in texts) + 10


def split_tokens(text: str) -> list[str]:
    """Split into word-plus-trailing-whitespace tokens; concatenation is lossless."""
    return _TOKEN.findall(text)


def directive_turn(turns: tuple[Turn, ...]) -> int | None:
    """Index of the most recent user turn that has text."""
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].role == "user" and turns[i].text.strip():
            return i
    return None


def directive_of(transcript: Transcript) -> Directive:
    """The request's directive, or an empty one (all defaults)."""
    idx = directive_turn(transcript.turns)
    found = find_directive(transcript.turns[idx].text) if idx is not None else None
    return found or Directive()


def plan_reply(*, transcript: Transcript, directive: Directive, default_tokens: int) -> Reply:
    """Decide the reply: another round of tool calls, or the text answer."""
    turns = transcript.turns
    start = directive_turn(turns) or 0
    rounds_done = sum(1 for t in turns[start:] if t.role == "user" and t.tool_results)
    rounds_wanted = directive.tool_rounds
    if directive.tools and (rounds_wanted < 0 or rounds_done < rounds_wanted):
        calls = tuple(
            _tool_call(transcript.seed, rounds_done, i, spec.name, spec.args)
            for i, spec in enumerate(directive.tools)
        )
        return Reply(text_tokens=(), tool_calls=calls, stop_reason="tool_use")
    prefix = [token for line in _result_lines(turns[start:]) for token in split_tokens(line)]
    n_words = directive.tokens if directive.tokens is not None else default_tokens
    tokens = prefix + generate_words(transcript.seed, n_words)
    cap = transcript.max_tokens
    if cap is not None and len(tokens) > cap:
        return Reply(text_tokens=tuple(tokens[:cap]), tool_calls=(), stop_reason="max_tokens")
    return Reply(text_tokens=tuple(tokens), tool_calls=(), stop_reason="end_turn")


def generate_words(seed: bytes, n: int) -> list[str]:
    rng = random.Random(int.from_bytes(seed, "big"))  # noqa: S311 - not crypto
    return [rng.choice(VOCABULARY) + " " for _ in range(n)]


def _tool_call(seed: bytes, round_no: int, index: int, name: str, args: dict[str, Any]) -> ToolCall:
    key = hashlib.sha256(seed + f":{round_no}:{index}".encode()).hexdigest()[:24]
    fragments = tuple(split_tokens(json.dumps(args))) or ("{}",)
    return ToolCall(key=key, name=name, args=args, fragments=fragments)


def _result_lines(turns: Iterable[Turn]) -> list[str]:
    """'Tool <name> returned <content>. ' for each tool result, in order."""
    names: dict[str, str] = {}
    lines = []
    for turn in turns:
        names.update((use.call_id, use.name) for use in turn.tool_uses)
        for result in turn.tool_results:
            name = names.get(result.call_id, result.call_id)
            lines.append(f"Tool {name} returned {result.content}. ")
    return lines
