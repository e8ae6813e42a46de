"""Health: `/healthz` (alive), `/readyz` and `/internal/v1/ready` (dependencies), `/metrics`.

Only `/internal/v1/ready` sits behind the internal token; the probes and the
scrape endpoint are open, as kubelet and Prometheus do not carry it.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay_state import health
from relay_state.deps import DbDep, RedisDep
from relay_state.metrics import POOL_IDLE, POOL_SIZE

probes = APIRouter(tags=["health"])
internal = APIRouter(tags=["health"])


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/readyz")
async def readyz(db: DbDep, redis: RedisDep) -> dict[str, str]:
    await health.check_ready(db=db, redis=redis)
    return {"status": "ready"}


@probes.get("/metrics")
async def metrics(db: DbDep) -> Response:
    size, idle = db.pool_stats()
    POOL_SIZE.set(size)
    POOL_IDLE.set(idle)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@internal.get("/ready")
async def ready(db: DbDep, redis: RedisDep) -> dict[str, str]:
    await health.check_ready(db=db, redis=redis)
    return {"status": "ready"}
