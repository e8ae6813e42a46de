"""`/internal/v1/documents`: documents and their full-text search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from relay_core.state_api import DocumentIn, DocumentOut, SearchOut
from relay_state import documents
from relay_state.deps import DbDep

router = APIRouter(prefix="/documents", tags=["documents"])


@router.post("", status_code=201)
async def add_document(body: DocumentIn, db: DbDep) -> DocumentOut:
    return await documents.add_document(db=db, doc=body)


@router.get("/search")
async def search(
    db: DbDep,
    user_id: str,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> SearchOut:
    return await documents.search(db=db, user_id=user_id, query=q, limit=limit)
