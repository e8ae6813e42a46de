"""Admin endpoints: kill switch and API keys (admin role only, 403 otherwise)."""

from __future__ import annotations

from typing import Any

import pytest

from relay_core import keys


@pytest.fixture
async def kill_switch_off(redis: Any) -> Any:
    await redis.delete(keys.KILL_SWITCH)
    yield
    await redis.delete(keys.KILL_SWITCH)


@pytest.mark.usefixtures("kill_switch_off")
async def test_kill_switch_refuses_new_runs_then_lets_them_through(
    gateway: Any, new_user: Any, redis: Any, poll: Any
) -> None:
    admin, alice = await new_user(role="admin"), await new_user()
    on = await gateway.put("/v1/admin/kill-switch", json={"enabled": True}, headers=admin.auth)
    assert on.status_code == 200 and on.json() == {"enabled": True}
    assert await redis.get(keys.KILL_SWITCH) == "1"
    refused = await gateway.post("/v1/runs", json={"message": "hi"}, headers=alice.auth)
    assert refused.status_code == 503
    assert refused.json()["error"]["reason"] == "kill_switch"
    assert (await gateway.management.get("/healthz")).json()["kill_switch"] is True
    assert "relay_gateway_kill_switch 1.0" in (await gateway.management.get("/metrics")).text
    got = await gateway.get("/v1/admin/kill-switch", headers=admin.auth)
    assert got.json() == {"enabled": True}
    # reads still work while new runs are refused
    assert (await gateway.get("/v1/runs", headers=alice.auth)).status_code == 200

    off = await gateway.put("/v1/admin/kill-switch", json={"enabled": False}, headers=admin.auth)
    assert off.json() == {"enabled": False}
    again = await gateway.post("/v1/runs", json={"message": "hi"}, headers=alice.auth)
    assert again.status_code == 202

    async def healthz_off() -> bool:
        return (await gateway.management.get("/healthz")).json()["kill_switch"] is False

    await poll(healthz_off, timeout_s=3, what="/healthz to report the switch off")


@pytest.mark.usefixtures("kill_switch_off")
async def test_kill_switch_set_on_another_replica_applies_here(
    gateway: Any, make_gateway: Any, state_service: Any, new_user: Any
) -> None:
    admin, alice = await new_user(role="admin"), await new_user()
    async with make_gateway(state_service.url) as other_replica:
        await other_replica.put("/v1/admin/kill-switch", json={"enabled": True}, headers=admin.auth)
    refused = await gateway.post("/v1/runs", json={"message": "hi"}, headers=alice.auth)
    assert refused.status_code == 503 and refused.json()["error"]["reason"] == "kill_switch"


async def test_admin_endpoints_are_403_for_users(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    calls = [
        ("GET", "/v1/admin/kill-switch", None),
        ("PUT", "/v1/admin/kill-switch", {"enabled": True}),
        ("GET", "/v1/admin/keys", None),
        ("POST", "/v1/admin/keys", {"user_id": "eve", "role": "admin"}),
        ("DELETE", f"/v1/admin/keys/{alice.key_id}", None),
    ]
    for method, path, body in calls:
        resp = await gateway.request(method, path, json=body, headers=alice.auth)
        assert resp.status_code == 403, (method, path)
        assert resp.json()["error"]["type"] == "forbidden"
    assert (await gateway.get("/v1/runs", headers=alice.auth)).status_code == 200  # not revoked


async def test_admin_endpoints_are_401_without_a_key(gateway: Any) -> None:
    resp = await gateway.put("/v1/admin/kill-switch", json={"enabled": True})
    assert resp.status_code == 401


async def test_create_list_and_use_a_key(gateway: Any, new_user: Any) -> None:
    admin = await new_user(role="admin")
    created = await gateway.post(
        "/v1/admin/keys",
        json={"user_id": "carol@example.com", "name": "laptop", "rate_limit_per_min": 100},
        headers=admin.auth,
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["user_id"] == "carol@example.com" and key["role"] == "user"
    assert key["api_key"].startswith(key["prefix"])
    carol = {"Authorization": f"Bearer {key['api_key']}"}
    assert (await gateway.get("/v1/runs", headers=carol)).status_code == 200

    listed = await gateway.get(
        "/v1/admin/keys", params={"user_id": "carol@example.com"}, headers=admin.auth
    )
    assert listed.status_code == 200
    rows = listed.json()["keys"]
    assert [r["key_id"] for r in rows] == [key["key_id"]]
    assert "api_key" not in rows[0]  # shown once, at creation


async def test_bad_key_requests_are_422(gateway: Any, new_user: Any) -> None:
    admin = await new_user(role="admin")
    bad_bodies: tuple[dict[str, Any], ...] = (
        {},
        {"user_id": "x", "role": "root"},
        {"user_id": "a b"},
        {"user_id": "x", "name": "nul\u0000"},
        {"user_id": "x", "rate_limit_per_min": 0},
    )
    for body in bad_bodies:
        resp = await gateway.post("/v1/admin/keys", json=body, headers=admin.auth)
        assert resp.status_code == 422, body
    resp = await gateway.put("/v1/admin/kill-switch", json={"enabled": "maybe"}, headers=admin.auth)
    assert resp.status_code == 422


async def test_revoked_key_stops_working_on_every_replica_within_the_ttl(
    gateway: Any, make_gateway: Any, state_service: Any, new_user: Any, poll: Any
) -> None:
    admin, alice = await new_user(role="admin"), await new_user()
    async with make_gateway(state_service.url, auth_cache_ttl_s=1.0) as replica:
        # the replica has alice's key in its cache
        assert (await replica.get("/v1/runs", headers=alice.auth)).status_code == 200
        resp = await gateway.delete(f"/v1/admin/keys/{alice.key_id}", headers=admin.auth)
        assert resp.status_code == 204 and resp.content == b""
        # the replica that revoked it refuses it at once
        assert (await gateway.get("/v1/runs", headers=alice.auth)).status_code == 401

        async def refused() -> bool:
            return (await replica.get("/v1/runs", headers=alice.auth)).status_code == 401

        took = await poll(refused, timeout_s=3.0, what="the other replica to refuse the key")
        assert took <= 1.5
    listed = (await gateway.get("/v1/admin/keys", params={"user_id": alice.user_id},
                                headers=admin.auth)).json()["keys"]  # fmt: skip
    assert listed[0]["revoked_at"] is not None


async def test_revoking_an_unknown_key_is_404(gateway: Any, new_user: Any) -> None:
    admin = await new_user(role="admin")
    for key_id in ("key_nope", "bad%20id"):
        resp = await gateway.delete(f"/v1/admin/keys/{key_id}", headers=admin.auth)
        assert resp.status_code == 404, key_id


async def test_a_keys_limits_are_changed_with_patch_and_apply_at_once(
    gateway: Any, new_user: Any
) -> None:
    """How an operator gives a tenant more (or less): PATCH the key's limits; a
    limit left out is kept, null puts it back to the default, and the gateway
    drops its cached verification so the next request sees the new limits."""
    admin = await new_user(role="admin")
    created = await gateway.post(
        "/v1/admin/keys",
        json={"user_id": "tenant-a", "max_streams": 10, "rate_limit_per_min": 100},
        headers=admin.auth,
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["api_key"], created.json()["key_id"]
    auth = {"Authorization": f"Bearer {key}"}
    assert (await gateway.get("/v1/runs", headers=auth)).status_code == 200  # cached now

    patched = await gateway.patch(
        f"/v1/admin/keys/{key_id}",
        json={"interactive_share": 1.0, "max_streams": None, "rate_limit_per_min": 1},
        headers=admin.auth,
    )
    assert patched.status_code == 200, patched.text
    view = patched.json()
    assert (view["interactive_share"], view["max_streams"], view["rate_limit_per_min"]) == (
        1.0,
        None,
        1,
    )
    listed = (await gateway.get("/v1/admin/keys?user_id=tenant-a", headers=admin.auth)).json()
    assert [k["interactive_share"] for k in listed["keys"]] == [1.0]
    # The new limit applies at once: one request a minute, and this one was used.
    statuses = [(await gateway.get("/v1/runs", headers=auth)).status_code for _ in range(3)]
    assert 429 in statuses, statuses


async def test_patching_a_key_is_validated_and_admin_only(gateway: Any, new_user: Any) -> None:
    admin, alice = await new_user(role="admin"), await new_user()
    url = f"/v1/admin/keys/{alice.key_id}"
    assert (
        await gateway.patch(url, json={"interactive_share": 1.0}, headers=alice.auth)
    ).status_code == 403
    for body in (
        {"interactive_share": 0},
        {"interactive_share": 1.5},
        {"max_streams": 0},
        {"role": "admin"},
    ):
        assert (await gateway.patch(url, json=body, headers=admin.auth)).status_code == 422, body
    unknown = await gateway.patch(
        "/v1/admin/keys/key_unknown", json={"max_streams": 5}, headers=admin.auth
    )
    assert unknown.status_code == 404
