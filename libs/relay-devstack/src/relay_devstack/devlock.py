"""The `make dev` lock: one running stack per data folder.

An exclusive `flock` on `<data>/dev.lock`, held for the life of `relay-dev up`
and released by the kernel however that process ends (children do not inherit
it: Popen closes inherited descriptors). The file holds one JSON object about
the running stack (pid, URLs, status) so a second `make dev` or `relay-dev
status` can say what is running instead of failing obscurely.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any


class DevLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def publish(self, info: dict[str, Any]) -> None:
        """Replace what the lock file says about the running stack."""
        if self._fd is None:
            raise RuntimeError("publish() needs the lock")
        data = json.dumps({"pid": os.getpid(), **info}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self, *, truncate: bool = True) -> None:
        if self._fd is not None:
            if truncate:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def is_locked(path: Path) -> bool:
    """Whether a live `relay-dev up` holds the lock at `path`."""
    if not path.exists():
        return False
    probe = DevLock(path)
    if probe.acquire():
        probe.release(truncate=False)
        return False
    return True


def read_info(path: Path, *, attempts: int = 20) -> dict[str, Any]:
    """What the holder published (it may be rewriting it: retry briefly)."""
    for _ in range(attempts):
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(path.read_text())
            if isinstance(info, dict):
                return info
        time.sleep(0.05)
    return {}
