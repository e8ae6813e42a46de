"""Human-facing output of the `relay-dev` command line.

Why not logging: this is a terminal UI (URLs, keys, a curl example) meant to
be read and copied, not JSON log lines; services never use it.
"""

from __future__ import annotations

import sys


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def complain(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
