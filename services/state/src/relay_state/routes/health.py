"""Health. Public (internal API) port: a minimal `/healthz`, and
`/internal/v1/ready` (behind the internal token) for the other services'
readiness checks. Management port (relay_core.management): `/livez`,
`/readyz`, `/metrics` and `/healthz` with the database pool's figures, open
because kubelet and Prometheus carry no token.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay_core.management import Alive, alive
from relay_state import health
from relay_state.deps import DbDep, RedisDep
from relay_state.metrics import POOL_IDLE, POOL_SIZE

probes = APIRouter(tags=["health"])
management = APIRouter(tags=["management"])
internal = APIRouter(tags=["health"])

probes.add_api_route("/healthz", alive, methods=["GET"], response_model=Alive)


@management.get("/healthz")
async def healthz(db: DbDep) -> dict[str, object]:
    size, idle = db.pool_stats()
    return {"status": "ok", "db_pool_connections": size, "db_pool_idle": idle}


@management.get("/readyz")
async def readyz(db: DbDep, redis: RedisDep) -> dict[str, str]:
    await health.check_ready(db=db, redis=redis)
    return {"status": "ready"}


@management.get("/metrics")
async def metrics(db: DbDep) -> Response:
    size, idle = db.pool_stats()
    POOL_SIZE.set(size)
    POOL_IDLE.set(idle)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@internal.get("/ready")
async def ready(db: DbDep, redis: RedisDep) -> dict[str, str]:
    await health.check_ready(db=db, redis=redis)
    return {"status": "ready"}
