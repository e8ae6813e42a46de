"""The chart's Redis layout: the partition tags it ships are the ones Relay
derives, and the runner pools scale on every partition's queue stream, with the
trigger type of the Redis they run on."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from relay_core import keys, partitions
from tests.deploy.chart import CHART_DIR, render_file, render_values

TAGS_FILE = CHART_DIR / "files" / "redis-partitions.yaml"
RUNNERS = {"runner-background": "background", "runner-interactive": "interactive"}


def test_the_chart_ships_the_tags_relay_derives() -> None:
    shipped = yaml.safe_load(TAGS_FILE.read_text())
    assert str(partitions.DEFAULT_PARTITIONS) in shipped
    for count, tags in shipped.items():
        assert tuple(tags) == partitions.tags(int(count)), count


def scaled_object(render: Any, component: str) -> dict[str, Any]:
    [found] = [
        o for o in render.of_kind("ScaledObject") if o["metadata"]["name"].endswith(component)
    ]
    return found


@pytest.mark.parametrize(
    ("values_file", "trigger_type"),
    [("production-values.yaml", "redis-streams"), ("cluster-values.yaml", "redis-cluster-streams")],
)
def test_runners_scale_on_every_partition_of_their_queue(
    values_file: str, trigger_type: str
) -> None:
    render = render_file(values_file)
    for component, pool in RUNNERS.items():
        obj = scaled_object(render, component)
        triggers = obj["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {trigger_type}
        streams = {t["metadata"]["stream"] for t in triggers}
        assert streams == {keys.queue(pool, p) for p in range(partitions.count())}
        assert len(triggers) == 2 * partitions.count()
        names = {t["name"] for t in triggers}
        formula = obj["spec"]["advanced"]["scalingModifiers"]["formula"]
        assert set(formula.split(" + ")) == names
        address_key = "addresses" if trigger_type == "redis-cluster-streams" else "address"
        assert all(address_key in t["metadata"] for t in triggers)


def config_env(render: Any, component: str) -> dict[str, str]:
    [cm] = [o for o in render.of_kind("ConfigMap") if o["metadata"]["name"].endswith(component)]
    return dict(cm["data"])


def test_every_service_is_told_the_mode_and_the_partition_count() -> None:
    for values_file, mode in (
        ("production-values.yaml", "standalone"),
        ("cluster-values.yaml", "cluster"),
    ):
        render = render_file(values_file)
        for component in ("gateway", "events", "state", *RUNNERS):
            env = config_env(render, component)
            assert env["RELAY_REDIS_MODE"] == mode
            assert env["RELAY_REDIS_PARTITIONS"] == "24"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"enabled": True, "cluster": True}}, "needs an external Redis Cluster"),
        ({"redis": {"cluster": True, "database": 2}}, "only database 0"),
    ],
)
def test_a_cluster_the_chart_cannot_serve_is_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        render_values(values)


def test_another_partition_count_scales_on_its_own_streams() -> None:
    render = render_values(
        {
            "redis": {"partitions": 12, "external": {"address": "redis:6379"}},
            "keda": {"enabled": True, "prometheus": {"serverAddress": "http://prom:9090"}},
        }
    )
    obj = scaled_object(render, "runner-background")
    streams = {t["metadata"]["stream"] for t in obj["spec"]["triggers"]}
    assert streams == {f"relay:{{{tag}}}:queue:background" for tag in partitions.tags(12)}
    assert config_env(render, "gateway")["RELAY_REDIS_PARTITIONS"] == "12"
