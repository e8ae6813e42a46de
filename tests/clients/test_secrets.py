"""No API key in any log line of the run: every key the clients' tests used
(SDK, CLI, console, user and admin) is looked for in every log the stack's
processes wrote (gateway, events, state, runners, modelsim, Redis, Postgres).

Runs after the other modules of this folder (alphabetical order), on the
same stack, so their requests are in the logs. The services keep no access
log (uvicorn's is off), so the URLs are checked where they are made: the
console test checks every URL the browser requested and its history.
"""

from __future__ import annotations

from relay_devstack.stack import Stack
from tests.clients.kit import KEYS_USED


def test_no_key_in_any_log_line(clients_stack: Stack, admin_key: str) -> None:
    logs = sorted(clients_stack.config.log_dir.glob("*.log"))
    assert {p.stem for p in logs} >= {"gateway", "events", "state"}, logs
    assert len(KEYS_USED) >= 2  # the admin key, and at least one user's
    leaks = []
    for path in logs:
        text = path.read_text(errors="replace")
        leaks += [f"{path.name}: key ending {key[-4:]}" for key in KEYS_USED if key in text]
    assert not leaks, leaks
