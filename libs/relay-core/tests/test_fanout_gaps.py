"""When a resume id means events were lost (`missed_events`), for what XINFO
STREAM reports on Redis 6.2 (no `max-deleted-entry-id`) and on Redis 7.

The harness runs Redis 6.2 (test_fanout.py covers the trimmed case against
it); the Redis 7 answers are written out here from XINFO's documented fields.
"""

from __future__ import annotations

import pytest

from relay_core.fanout_stream import ZERO_ID, StreamInfo, missed_events

FIRST = (100, 0)  # the first entry still kept


def redis62(first: tuple[int, int] | None = FIRST) -> StreamInfo:
    return StreamInfo(missing=False, first=first, last_id="200-0")


def redis7(max_deleted: tuple[int, int], first: tuple[int, int] | None = FIRST) -> StreamInfo:
    return StreamInfo(missing=False, first=first, last_id="200-0", max_deleted=max_deleted)


@pytest.mark.parametrize(
    ("info", "after", "missed"),
    [
        # no resume id: the whole stream is replayed, nothing to miss
        (redis62(), None, False),
        (redis7((150, 0)), None, False),
        # Redis 6.2: older than the first kept entry is a gap
        (redis62(), (99, 0), True),
        (redis62(), (100, 0), False),
        (redis62(), (150, 0), False),
        (redis62(first=None), (150, 0), False),  # empty stream
        # Redis 7, exact: a deletion past the resume id is a gap...
        (redis7((120, 0), first=(121, 0)), (110, 0), True),
        # ...one at or before it is not, even when the id is older than the first entry
        (redis7((99, 5)), (99, 5), False),
        (redis7((99, 5)), (99, 7), False),
        # Redis 7, a stream recreated since the client's id: nothing deleted yet,
        # every entry newer than the id (never so in a stream that was not recreated)
        (redis7(ZERO_ID), (99, 0), True),
        (redis7(ZERO_ID), (100, 0), False),
        (redis7(ZERO_ID), (150, 0), False),
        # recreated and trimmed since: its deletions are newer than the id
        (redis7((130, 0), first=(131, 0)), (99, 0), True),
    ],
)
def test_missed_events(info: StreamInfo, after: tuple[int, int] | None, missed: bool) -> None:
    assert missed_events(info, after) is missed
