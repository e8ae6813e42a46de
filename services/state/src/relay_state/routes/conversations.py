"""`/internal/v1/conversations`: transcripts."""

from __future__ import annotations

from fastapi import APIRouter

from relay_core.state_api import MessagesOut
from relay_state import conversations
from relay_state.deps import DbDep, RedisDep, SettingsDep

router = APIRouter(prefix="/conversations", tags=["conversations"])


@router.get("/{conversation_id}/messages")
async def get_messages(
    conversation_id: str, user_id: str, db: DbDep, redis: RedisDep, settings: SettingsDep
) -> MessagesOut:
    return await conversations.get_messages(
        db=db,
        redis=redis,
        conversation_id=conversation_id,
        user_id=user_id,
        cache_ttl_s=settings.history_cache_ttl_s,
    )
