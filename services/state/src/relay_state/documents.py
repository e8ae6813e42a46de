"""Documents a user loads, and full-text search over them (the `search_docs` tool).

Postgres does the search: a generated, stored `tsvector` (title weighted above
body) with a GIN index, `websearch_to_tsquery` so a user's query syntax
("quoted phrases", -exclusions, or) is accepted as typed and never a syntax
error, `ts_rank` to order and `ts_headline` for the snippet. Every query is
scoped to the user.
"""

from __future__ import annotations

from relay_core.state_api import DocumentIn, DocumentOut, SearchHit, SearchOut
from relay_state import ids
from relay_state.db import Database

_HEADLINE_OPTIONS = "MaxFragments=2, MaxWords=30, MinWords=8, StartSel=**, StopSel=**"


async def add_document(*, db: Database, doc: DocumentIn) -> DocumentOut:
    doc_id = ids.new_id("doc")
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO documents (id, user_id, title, body) VALUES ($1, $2, $3, $4)",
            doc_id,
            doc.user_id,
            doc.title,
            doc.body,
        )
    return DocumentOut(document_id=doc_id, title=doc.title)


async def search(*, db: Database, user_id: str, query: str, limit: int) -> SearchOut:
    async with db.connection() as conn:
        found = await conn.fetch(
            """
            WITH q AS (SELECT websearch_to_tsquery('english', $2) AS query)
            SELECT d.id, d.title, ts_rank(d.tsv, q.query) AS rank,
                   ts_headline('english', d.body, q.query, $4) AS snippet
            FROM documents d, q
            WHERE d.user_id = $1 AND d.tsv @@ q.query
            ORDER BY rank DESC, d.created_at DESC
            LIMIT $3
            """,
            user_id,
            query,
            limit,
            _HEADLINE_OPTIONS,
        )
    return SearchOut(
        results=[
            SearchHit(
                document_id=r["id"], title=r["title"], snippet=r["snippet"], rank=float(r["rank"])
            )
            for r in found
        ]
    )
