"""Cost ceilings hold under concurrency: 50 runs of one user, a daily ceiling that fits 10.

Each run's model call reserves its worst case in Redis before it goes out
(`relay_runner.budget`), so however the runs interleave on the runners, the
user's recorded spend never passes the ceiling; the runs that do not fit end
`failed` with reason `daily_budget_exceeded`. The test catalogue has a model
whose `max_tokens` the reply uses up, so a run's real cost is close to its
reservation and "fits 10" is exact.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay_core.models import ModelCatalog, cost_usd
from relay_devstack.harness import wait_for

MAX_TOKENS = 64
CATALOG = {
    "sim-small": {
        "provider": "anthropic",
        "upstream_model": "sim-small",
        "input_usd_per_mtok": 3.0,
        "output_usd_per_mtok": 15.0,
        "max_tokens": MAX_TOKENS,
        "fallbacks": [],
    }
}
MESSAGE = 'budget run\n#sim {"tokens": 64, "token_delay_ms": 10}'
RUNS = 50


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "models.json"
    path.write_text(json.dumps(CATALOG))
    path.chmod(0o644)
    path.parent.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def budget_stack(stack_factory: Any, catalog_file: Path) -> Any:
    return stack_factory(
        overrides={
            "all": {"RELAY_MODELS_FILE": str(catalog_file)},
            "gateway": {"RELAY_DEFAULT_MODEL": "sim-small", "RELAY_MAX_CONCURRENT_RUNS": "1000"},
            "runner": {"RELAY_RUNNER_CONCURRENCY": "25"},
        }
    )


def one_run_cost() -> float:
    model = ModelCatalog.from_mapping(CATALOG).get("sim-small")
    # modelsim bills input as words + 10; the prompt is a handful of words.
    return cost_usd(model, len(MESSAGE.split()) + 10, MAX_TOKENS)


def test_concurrent_runs_never_spend_past_the_daily_ceiling(budget_stack: Any) -> None:
    ceiling = round(one_run_cost() * 10.5, 6)
    admin = {"Authorization": f"Bearer {budget_stack.admin_key}"}
    created = httpx.post(
        f"{budget_stack.gateway_url}/v1/admin/keys",
        json={"user_id": "budget-user", "role": "user", "daily_limit_usd": ceiling},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    user = {"Authorization": f"Bearer {created.json()['api_key']}"}

    def submit(_: int) -> str:
        resp = httpx.post(
            f"{budget_stack.gateway_url}/v1/runs", json={"message": MESSAGE}, headers=user
        )
        assert resp.status_code == 202, resp.text
        return str(resp.json()["run_id"])

    with ThreadPoolExecutor(max_workers=25) as pool:
        run_ids = list(pool.map(submit, range(RUNS)))

    def finished() -> list[dict[str, Any]] | None:
        runs = [
            httpx.get(f"{budget_stack.gateway_url}/v1/runs/{r}", headers=user).json()
            for r in run_ids
        ]
        done = all(r["status"] in ("succeeded", "failed", "cancelled") for r in runs)
        return runs if done else None

    runs = wait_for(finished, timeout_s=120, what="all 50 runs to end", interval_s=0.5)
    assert runs is not None
    succeeded = [r for r in runs if r["status"] == "succeeded"]
    refused = [r for r in runs if r["status"] == "failed"]
    assert len(succeeded) + len(refused) == RUNS
    assert all(r["error"]["reason"] == "daily_budget_exceeded" for r in refused), refused[:2]
    assert 1 <= len(succeeded) <= 10
    spent = sum(r["cost_usd"] for r in runs)
    assert spent <= ceiling + 1e-9, f"spent {spent} over the ceiling {ceiling}"
