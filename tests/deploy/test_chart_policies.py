"""Policy checks (tests/deploy/policy.py) over every render of the ci/ matrix.

Hardened pods, resources and probes, PDBs, secrets only by reference, a single
autoscaler per workload with `replicas` left to it, runners that outlive their
drain deadline, the ingress routing SSE paths to the events service, and
NetworkPolicies that keep state and the databases inside the release.
"""

from __future__ import annotations

import pytest

from tests.deploy import policy
from tests.deploy.chart import Render, load_chart


@pytest.mark.parametrize("check", sorted(policy.ALL_CHECKS))
def test_policy(render: Render, check: str) -> None:
    if check == "network_policies":
        metrics_peers = load_chart().merge_values(render.values)["networkPolicy"]["metricsScrapers"]
        problems = policy.check_network_policies(render.objects, metrics_peers)
    else:
        problems = policy.ALL_CHECKS[check](render.objects)
    assert not problems, "\n".join(problems)


def test_every_render_has_network_policies_and_no_secret_objects(render: Render) -> None:
    assert render.of_kind("NetworkPolicy")
    assert not render.of_kind("Secret")
