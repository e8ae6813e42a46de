"""The fan-out reader's multiplexed `XREAD`: each run's cursor, and the command in RESP.

Internal to `relay_core.fanout`: `Run` is the hub's per-process state of one
run (its subscribers and the reader's cursor), `xread_command` the command
its reader sends on every loop.

Design decision, and why:

- **The reader's command is assembled, not packed.** `XREAD` over thousands
  of streams is built from RESP pieces encoded once per run (`Run.key_resp`)
  and per cursor move (`Run.move`), and sent on a raw connection: redis-py's
  generic packer took ~4 ms per call with 4,000 arguments, most of the
  engine's CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import TYPE_CHECKING

from relay_core import keys
from relay_core.fanout_stream import StreamInfo

if TYPE_CHECKING:
    from relay_core.fanout_subscription import Subscription

__all__ = ["Run", "bulk", "xread_command"]


def bulk(value: str) -> bytes:
    """A RESP bulk string."""
    raw = value.encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class Run:
    """Per-process state of one run: its subscribers and the reader's cursor."""

    __slots__ = (
        "cursor", "cursor_resp", "epoch", "finished", "key", "key_resp", "ready", "run_id", "subs",
    )  # fmt: skip

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.key = keys.events(run_id)
        self.key_resp = bulk(self.key)  # its piece of the reader's XREAD, encoded once
        self.subs: set[Subscription] = set()
        self.cursor: str | None = None  # set once activated; the reader reads after it
        self.cursor_resp = b""
        self.finished = False  # the terminal event is stored: nothing more will come
        self.ready: asyncio.Future[StreamInfo] | None = None
        self.epoch = 0  # bumped when the cursor goes back: replies read before are stale

    def move(self, cursor: str) -> None:
        self.cursor = cursor
        self.cursor_resp = bulk(cursor)


def xread_command(
    runs: Collection[Run], *, wake_key_resp: bytes, wake_cursor: str, count: int, block_ms: int
) -> bytes:
    """`XREAD COUNT n BLOCK ms STREAMS <wake> <keys...> <wake id> <ids...>` in RESP.

    Built from pieces encoded once per run (and once per cursor move):
    redis-py's generic packer spends ~4 ms on a command with 4,000
    arguments, every loop, which was most of the engine's CPU.
    """
    n = len(runs) + 1
    head = b"*%d\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n%s$5\r\nBLOCK\r\n%s$7\r\nSTREAMS\r\n" % (
        6 + 2 * n,
        bulk(str(count)),
        bulk(str(block_ms)),
    )
    return b"".join(
        [
            head,
            wake_key_resp,
            *[r.key_resp for r in runs],
            bulk(wake_cursor),
            *[r.cursor_resp for r in runs],
        ]
    )
