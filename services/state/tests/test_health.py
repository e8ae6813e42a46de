"""Probes, metrics, and the service's life through a Postgres outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from relay_core.state_api import CreateRunIn
from relay_core.state_client import NotFound, StateClient, StateUnavailable
from relay_devstack.procs import free_port
from relay_devstack.servers import PostgresServer
from relay_state.migrate import migrate

from .conftest import TOKEN, ServerThread, make_settings

NewRun = Callable[..., CreateRunIn]


async def test_probes_and_metrics(
    state: ServerThread, client: StateClient, new_run: NewRun
) -> None:
    await client.create_run(new_run())
    assert await client.ready()
    with pytest.raises(NotFound):
        await client.get_run("run_unknown")
    async with (
        httpx.AsyncClient(base_url=state.base_url, timeout=5) as http,
        httpx.AsyncClient(base_url=state.management_url, timeout=5) as management,
    ):
        assert (await http.get("/nowhere")).status_code == 404
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/metrics")).status_code == 404  # on the management port
        assert (await management.get("/livez")).json() == {"status": "ok"}
        assert (await management.get("/healthz")).json()["status"] == "ok"
        assert (await management.get("/readyz")).status_code == 200
        metrics = (await management.get("/metrics")).text
    assert (
        'relay_state_requests_total{method="POST",route="/internal/v1/runs",status="201"}'
        in metrics
    )
    assert (
        'relay_state_requests_total{method="GET",route="/internal/v1/runs/{run_id}",status="404"}'
        in metrics
    )
    assert 'route="/nowhere"' not in metrics
    assert 'relay_state_runs_created_total{kind="background"}' in metrics
    assert "relay_state_reconciler_reenqueued_total" in metrics
    assert "relay_state_db_pool_connections" in metrics


async def _unavailable_fast(client: StateClient, req: CreateRunIn) -> StateUnavailable:
    started = time.monotonic()
    with pytest.raises(StateUnavailable) as err:
        await client.create_run(req)
    assert time.monotonic() - started < 3.0
    return err.value


async def _works_again(client: StateClient, req: CreateRunIn) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            await client.create_run(req)
            return
        except StateUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_starts_without_postgres_answers_503_and_recovers(
    relay_tmp: Path,
    redis_url: str,
    start_state: Callable[..., ServerThread],
    new_run: NewRun,
) -> None:
    pg = PostgresServer(relay_tmp / f"pg-{uuid.uuid4().hex[:8]}", port=free_port())
    state = start_state(make_settings(pg.url, redis_url))
    client = StateClient(state.base_url, TOKEN, timeout_s=10)
    http = httpx.AsyncClient(base_url=state.management_url, timeout=5)
    try:
        assert (await http.get("/livez")).status_code == 200
        readyz = await http.get("/readyz")
        assert readyz.status_code == 503
        assert readyz.json()["error"]["type"] == "unavailable"
        assert readyz.json()["error"]["message"].startswith("postgres: ")
        err = await _unavailable_fast(client, new_run())
        assert err.status == 503 and "postgres" in str(err)

        pg.start()
        await migrate(pg.url)
        await _works_again(client, new_run())
        assert (await http.get("/readyz")).status_code == 200

        pg.stop()
        await _unavailable_fast(client, new_run())
        pg.start()
        await _works_again(client, new_run())
        page = await client.list_runs(user_id="alice")
        assert len(page.runs) == 2
    finally:
        await http.aclose()
        await client.aclose()
        pg.stop()


async def test_a_hung_postgres_is_a_fast_503_then_recovers(
    relay_tmp: Path,
    redis_url: str,
    start_state: Callable[..., ServerThread],
    new_run: NewRun,
) -> None:
    pg = PostgresServer(relay_tmp / f"pg-{uuid.uuid4().hex[:8]}").start()
    try:
        await migrate(pg.url)
        # A stopped postmaster accepts TCP connections and never answers: only
        # the connect timeout can turn that into an answer.
        pg.pause()
        try:
            state = start_state(make_settings(pg.url, redis_url, dependency_timeout_s=0.5))
            client = StateClient(state.base_url, TOKEN, timeout_s=10)
            err = await _unavailable_fast(client, new_run())
            assert "postgres" in str(err)
        finally:
            pg.resume()
        try:
            await _works_again(client, new_run())
        finally:
            await client.aclose()
    finally:
        pg.stop()
