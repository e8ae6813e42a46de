"""Admission of a new run beyond the kill switch: the hook for per-user limits.

Issue 5 item 7 adds, here and nowhere else: the per-user concurrent-runs limit
(`max_concurrent_runs` of the key, else the setting; 429 with `Retry-After`,
counted in `relay_core.keys.user_active_runs`) and one active run per
conversation (`reject` → 409, `enqueue` → run after the active one). Issue 4
adds the interactive capacity wait (`RELAY_INTERACTIVE_QUEUE_TIMEOUT_S`, then
429). Both need the runner's side of the contract (who removes a finished run
from the active set), which does not exist yet, so nothing is enforced today.
"""

from __future__ import annotations

from relay_core.state_api import Principal, RunKind
from relay_gateway.runtime import Runtime


async def admit(
    *, runtime: Runtime, principal: Principal, conversation_id: str | None, kind: RunKind
) -> None:
    """Raise an `ApiError` (429/409) when this run may not start now. Admits all today."""
    del runtime, principal, conversation_id, kind
