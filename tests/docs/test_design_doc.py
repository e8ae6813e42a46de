"""docs/design.md names everything the code has: it cannot silently fall behind.

The contract used to live outside the repository and drifted (it had no
`on_conflict`, no 429 reasons, no `documents` table, an old `/healthz`).
Now `design_contract` reads from the code every public route, request and
response field and parameter, SSE event type and payload field, Redis key,
error reason, run status and Postgres column,
and these tests fail when the document does not name one of them. The other
tests here show the check can fail: a document with one thing taken out is
caught, for every kind of thing, and so is a key or a route the code gains.
"""

from __future__ import annotations

import re
import types

import pytest
from fastapi import FastAPI

from tests.docs import design_contract as dc
from tests.docs.design_contract import Item


@pytest.fixture(scope="module")
def doc() -> str:
    return dc.DOC.read_text()


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return dc.contract()


def test_the_design_doc_names_everything_the_code_has(doc: str, items: list[Item]) -> None:
    gaps = [f"{item.kind}: {item.name}" for item in dc.missing(doc, items)]
    assert not gaps, (
        "docs/design.md does not mention these (a change to them lands with a change "
        f"to the document): {gaps}"
    )


def test_the_contract_is_read_from_the_code_not_empty(items: list[Item]) -> None:
    """The derivations found what they are for (a refactor that broke one would
    otherwise make the check above pass vacuously)."""
    from relay_core import events

    names = {(item.kind, item.name) for item in items}
    assert ("route", "POST /v1/runs (gateway)") in names
    assert ("route", "GET /v1/runs/{run_id}/events (events)") in names
    assert ("redis key", "events() = relay:{partition}:events:{run_id}") in names
    assert ("redis key", "queue('interactive') = relay:{partition}:queue:interactive") in names
    assert ("redis key", "pool_capacity() = relay:capacity:{pool}") in names
    assert ("event field", "tool_end.error") in names  # optional fields too
    assert ("column", "runs.deferred") in names  # a column added by ALTER TABLE
    assert ("api field", "SubmitRunIn.on_conflict") in names
    assert ("api field", "Health.interactive_capacity") in names
    assert set(dc.event_builders(events)) == events.EVENT_TYPES, "an event type has no builder"


def _without(doc: str, item: Item) -> str:
    """The document with every passage that satisfied `item` blanked out."""
    while (found := re.search(item.pattern, doc, flags=re.MULTILINE)) is not None:
        start, end = found.span()
        # Blank only the matched name at the end of the match, not the whole
        # section the pattern walks through to reach it.
        tail = doc[start:end]
        name_start = start + max(tail.rfind("`", 0, len(tail) - 1), 0)
        doc = doc[:name_start] + doc[end:]
    return doc


@pytest.mark.parametrize(
    "kind",
    [
        "route",
        "api field",
        "api parameter",
        "event",
        "event field",
        "redis key",
        "api error reason",
        "run error reason",
        "run status",
        "table",
        "column",
    ],
)
def test_a_document_missing_one_item_fails(doc: str, items: list[Item], kind: str) -> None:
    of_kind = [item for item in items if item.kind == kind]
    assert of_kind, kind
    for item in (of_kind[0], of_kind[-1]):
        gaps = dc.missing(_without(doc, item), items)
        assert item in gaps, f"{item.name} removed from the document, yet not reported"


def test_a_redis_key_the_code_gains_is_required() -> None:
    keys = types.ModuleType("fake_keys")
    exec(  # noqa: S102 - a keys module written on the spot
        "PREFIX = 'relay:'\n"
        "POOLS = ('a', 'b')\n"
        "RUNNERS_GROUP = 'runners'\n"
        "def thing(run_id): return f'relay:thing:{run_id}:parts'\n"
        "def pooled(pool):\n"
        "    if pool not in POOLS: raise ValueError(pool)\n"
        "    return f'relay:pool:{pool}'\n",
        keys.__dict__,
    )
    items = dc.redis_keys(keys)
    assert sorted(item.name for item in items) == [
        "RUNNERS_GROUP = runners",
        "pooled('a') = relay:pool:a",
        "pooled('b') = relay:pool:b",
        "thing() = relay:thing:{run_id}:parts",
    ]
    doc = (
        "## Redis keys\n\n| `relay:thing:{id}:parts` | `relay:pool:a` | group `runners` |\n"
        "\n## Postgres\n\n`relay:pool:b`\n"
    )
    assert [item.name for item in dc.missing(doc, items)] == ["pooled('b') = relay:pool:b"]


def test_a_route_the_code_gains_is_required() -> None:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {}

    (item,) = dc.routes({"gateway": app})
    assert item.name == "GET /v1/things/{thing_id} (gateway)"
    listed = "## Public API\n\n### Gateway\n\n| `GET /v1/things/{thing_id}` |\n"
    assert dc.missing(listed, [item]) == []
    elsewhere = "## Public API\n\n### Events service\n\n| `GET /v1/things/{thing_id}` |\n"
    assert dc.missing(elsewhere, [item]) == [item]
