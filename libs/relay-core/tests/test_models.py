"""The model catalog: defaults, files, fallbacks, prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay_core.models import ModelCatalog, UnknownModel, cost_usd


def test_default_catalog() -> None:
    catalog = ModelCatalog.default()
    assert catalog.names() == ["sim-default", "sim-fallback", "sim-openai"]
    assert [s.name for s in catalog.chain("sim-default")] == ["sim-default", "sim-fallback"]
    assert catalog.get("sim-openai").provider == "openai"
    spec = catalog.get("sim-default")
    assert cost_usd(spec, 1_000_000, 1_000_000) == pytest.approx(18.0)
    assert cost_usd(spec, 100, 10) == pytest.approx(0.00045)
    with pytest.raises(UnknownModel):
        catalog.get("gpt-17")


def test_load_json_and_yaml(tmp_path: Path) -> None:
    models = {"a": {"provider": "openai", "upstream_model": "up-a", "fallbacks": ["b"]},
              "b": {"provider": "anthropic", "upstream_model": "up-b"}}  # fmt: skip
    json_file = tmp_path / "models.json"
    json_file.write_text(json.dumps({"models": models}))
    assert [s.upstream_model for s in ModelCatalog.load(json_file).chain("a")] == ["up-a", "up-b"]
    yaml_file = tmp_path / "models.yaml"
    yaml_file.write_text("b:\n  provider: anthropic\n  upstream_model: up-b\n  max_tokens: 99\n")
    assert ModelCatalog.load(yaml_file).get("b").max_tokens == 99
    assert ModelCatalog.load(None).names() == ModelCatalog.default().names()


def test_bad_files_fail_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": {"provider": "anthropic", "upstream_model": "x",
                                     "fallbacks": ["nope"]}}))  # fmt: skip
    with pytest.raises(ValueError, match="unknown"):
        ModelCatalog.load(bad)
    bad.write_text(json.dumps({"a": {"provider": "bedrock", "upstream_model": "x"}}))
    with pytest.raises(ValueError):
        ModelCatalog.load(bad)
