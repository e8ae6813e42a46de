"""`relay`: the command line of Relay.

    relay chat "What is 6*7?"            an interactive run, streamed
    relay run "Summarise ..."            a background run, followed
    relay runs list|show|cancel|events   your runs
    relay conversations show ID          a transcript
    relay admin kill-switch on|off|status, relay admin keys create|list|revoke
    relay top                            the live overview (admin)

Every failure is one clear line on stderr and a non-zero exit: 1 for a
refusal or a run that did not succeed, 2 for a usage or config error.
"""

from __future__ import annotations

import sys

import httpx

from relay_cli import admin_commands, run_commands, top  # noqa: F401 - they register commands
from relay_cli.app import app
from relay_cli.output import fail
from relay_cli.profiles import ConfigError
from relay_client import RelayError


def main() -> None:
    try:
        app()
    except RelayError as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        fail(f"{exc}{status}")
        sys.exit(1)
    except ConfigError as exc:
        fail(str(exc))
        sys.exit(2)
    except httpx.TransportError as exc:
        fail(f"cannot reach Relay: {type(exc).__name__}: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
