"""The harness's stack comes up as real processes and every service is ready."""

from __future__ import annotations

import httpx

from relay_devstack.harness import api, new_user
from relay_devstack.stack import Stack


def test_every_service_answers_ready(stack: Stack) -> None:
    assert set(stack.specs) >= {
        "modelsim", "state", "runner-background", "runner-interactive", "gateway", "events"
    }  # fmt: skip
    with httpx.Client(timeout=2.0) as http:
        for name, spec in stack.specs.items():
            probes = stack.management_url(name)  # modelsim's: its one port
            resp = http.get(probes + spec.ready_path)
            assert resp.status_code == 200, f"{name}: {resp.status_code} {resp.text}"
            if spec.ready_path != "/readyz":  # modelsim has no dependencies
                continue
            assert http.get(probes + "/livez").status_code == 200, name
            assert http.get(probes + "/healthz").status_code == 200, name


def test_dev_keys_and_new_users_authenticate(stack: Stack) -> None:
    for key in (stack.api_key, stack.admin_key, new_user(stack)):
        with api(stack, key) as client:
            assert client.get("/v1/runs").status_code == 200
    with api(stack, "rk_not-a-key") as client:
        assert client.get("/v1/runs").status_code == 401
