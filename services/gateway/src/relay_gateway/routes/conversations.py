"""`/v1/conversations/{id}/messages`: a conversation's transcript."""

from __future__ import annotations

from fastapi import APIRouter

from relay_gateway import service
from relay_gateway.deps import CurrentPrincipal, RuntimeDep
from relay_gateway.routes import AUTH, errors
from relay_gateway.schemas import MessagesView

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.get(
    "/{conversation_id}/messages",
    response_model=MessagesView,
    summary="A conversation's transcript, oldest first",
    responses=errors(404, *AUTH),
)
async def get_messages(
    conversation_id: str, principal: CurrentPrincipal, runtime: RuntimeDep
) -> MessagesView:
    return await service.conversation_messages(
        runtime=runtime, principal=principal, conversation_id=conversation_id
    )
