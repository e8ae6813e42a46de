"""What the fan-out engine reads from a run's stream: ids, resume ids, entries.

Internal to `relay_core.fanout` (which re-exports `RunRecord`,
`parse_after_id` and `transcript_url`); the hub and its subscriptions share it.

Design decisions, and why:

- **Ids are `(ms, seq)` tuples.** Stream ids are the order of events, and the
  engine's one filter against gaps and duplicates is "strictly newer than the
  last one delivered" (`Subscription._accept`): tuples compare in that order
  for free; the text form (`id_text`) is rebuilt only where Redis needs it.
- **A resume id stays a valid Redis id.** Redis ids are two unsigned 64-bit
  numbers and a replay starts at `(<id>` (exclusive), so a resume id with a
  part at or above 2**64 - 1 is refused (400) rather than sent to Redis. `0`
  and `0-0` mean "from the start", like no id at all.
- **A malformed entry is skipped, not fatal.** An entry that does not decode
  is logged and passed over (by the live feed and the replay alike), so it
  cannot end every subscriber of the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from relay_core import events as ev
from relay_core.events import Event, parse_stream_id

__all__ = [
    "NO_ID",
    "ZERO_ID",
    "Item",
    "RunRecord",
    "StreamId",
    "StreamInfo",
    "decode_or_skip",
    "id_text",
    "missed_events",
    "parse_after_id",
    "transcript_url",
]

log = logging.getLogger(__name__)

StreamId = tuple[int, int]
NO_ID: StreamId = (-1, -1)
ZERO_ID: StreamId = (0, 0)
Item = tuple[StreamId, Event]  # what the reader hands a subscriber: an event and its id
_MAX_PART = 2**64 - 1  # Redis ids are two unsigned 64-bit numbers; keep `(id` valid


class RunRecord(Protocol):
    """What the hub needs to know about a run (`state_api.RunOut` has it)."""

    @property
    def status(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def cost_usd(self) -> float: ...


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A run stream as `XINFO STREAM` found it (see `Subscription._open`)."""

    missing: bool
    first: StreamId | None = None
    last_id: str | None = None
    last_terminal: bool = False
    max_deleted: StreamId | None = None  # Redis 7+ only


def missed_events(info: StreamInfo, after: StreamId | None) -> bool:
    """Whether events after `after` (a resume id) may be gone from the stream.

    Redis 7 keeps the largest deleted id (`max-deleted-entry-id`): anything
    deleted after the resume id is a gap, exactly. A stream recreated since
    (Redis restarted empty, then the run resumed) has deleted nothing yet and
    starts after the resume id, which no entry of a stream that was never
    trimmed can do: a gap too. Redis 6.2 keeps no such id: a resume id older
    than the first kept entry counts as a gap (rarely a false alarm, when the
    client had exactly every trimmed entry; never a missed one).
    """
    if after is None:
        return False
    older_than_kept = info.first is not None and after < info.first
    if info.max_deleted is None:
        return older_than_kept
    return info.max_deleted > after or (info.max_deleted == ZERO_ID and older_than_kept)


def transcript_url(conversation_id: str) -> str:
    return f"/v1/conversations/{conversation_id}/messages"


def parse_after_id(value: str | None) -> StreamId | None:
    """A resume id (`Last-Event-ID`) as a tuple; None for none or `0`/`0-0`.

    Raises ValueError when it is malformed (the service answers 400).
    """
    if value is None or value.strip() == "":
        return None
    sid = parse_stream_id(value.strip())
    if sid[0] >= _MAX_PART or sid[1] >= _MAX_PART:
        raise ValueError(f"event id out of range {value!r}")
    return None if sid == ZERO_ID else sid


def id_text(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def decode_or_skip(entry_id: str, fields: dict[str, str]) -> Event | None:
    try:
        return ev.decode_entry(entry_id, fields)
    except (KeyError, ValueError):
        log.warning("skipping a malformed event entry", extra={"entry_id": entry_id})
        return None
