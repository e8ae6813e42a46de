"""Documents and full-text search, scoped to the user."""

from __future__ import annotations

import httpx

from relay_core.state_api import DocumentIn
from relay_core.state_client import StateClient


async def test_search_finds_by_words_and_is_user_scoped(client: StateClient) -> None:
    kettle = await client.add_document(
        DocumentIn(
            user_id="alice",
            title="Descaling the kettle",
            body="Fill the kettle with vinegar and water, boil it, then rinse twice.",
        )
    )
    await client.add_document(
        DocumentIn(user_id="alice", title="Garden", body="Water the tomatoes every morning.")
    )
    await client.add_document(
        DocumentIn(user_id="bob", title="Bob's kettle", body="My kettle is blue.")
    )
    assert kettle.document_id.startswith("doc_")

    found = await client.search_documents(user_id="alice", query="kettles vinegar")
    assert [h.document_id for h in found.results] == [kettle.document_id]
    assert "**vinegar**" in found.results[0].snippet
    assert found.results[0].rank > 0

    water = await client.search_documents(user_id="alice", query="water")
    assert len(water.results) == 2
    excluded = await client.search_documents(user_id="alice", query="water -tomatoes")
    assert [h.document_id for h in excluded.results] == [kettle.document_id]

    bobs = await client.search_documents(user_id="bob", query="kettle")
    assert [h.title for h in bobs.results] == ["Bob's kettle"]
    assert (await client.search_documents(user_id="carol", query="kettle")).results == []
    # Query syntax a user may type is never an error.
    odd = await client.search_documents(user_id="alice", query='"unbalanced & | ! (')
    assert odd.results == []


async def test_search_limit_and_empty_query(http: httpx.AsyncClient) -> None:
    empty = await http.get("/documents/search", params={"user_id": "alice", "q": ""})
    assert empty.status_code == 422
    big = await http.get("/documents/search", params={"user_id": "alice", "q": "x", "limit": 1000})
    assert big.status_code == 422


async def test_a_document_too_large_to_index_is_413(http: httpx.AsyncClient) -> None:
    body = " ".join(f"word{i}" for i in range(150_000))
    resp = await http.post("/documents", json={"user_id": "alice", "title": "big", "body": body})
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "payload_too_large"
