"""The model catalog: public model names, their provider, prices and fallbacks.

Why a catalog: a run names a public model (`sim-default`); what that means
upstream (which provider, which model id, what a million tokens cost, which
models to fall back to) is deployment configuration, loaded from
`RELAY_MODELS_FILE` (JSON or YAML) by the service's config, with a built-in
default that points at modelsim so dev and tests need no file.

A file maps names to specs, either at the top level or under `models`:

    models:
      sim-default: {provider: anthropic, upstream_model: sim-default,
                    input_usd_per_mtok: 3, output_usd_per_mtok: 15,
                    fallbacks: [sim-fallback]}

Every fallback must name a model of the same catalog; a typo fails at load.

Why in relay_core: two services read the same file, the gateway (a run's
model must be in the catalog, else 422) and the runner (the chain to call,
the prices to bill); and `relay_agent` speaks `ModelSpec`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_MODELS", "ModelCatalog", "ModelSpec", "UnknownModel", "cost_usd"]

ProviderName = Literal["anthropic", "openai"]


class UnknownModel(KeyError):
    """A model name the catalog does not have."""


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    provider: ProviderName
    upstream_model: str = Field(min_length=1)
    input_usd_per_mtok: float = Field(default=0.0, ge=0)
    output_usd_per_mtok: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=4096, ge=1)
    fallbacks: list[str] = Field(default_factory=list)


def cost_usd(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float:
    """What a turn cost, from the spec's prices per million tokens."""
    cost = (
        input_tokens * spec.input_usd_per_mtok + output_tokens * spec.output_usd_per_mtok
    ) / 1_000_000
    return round(cost, 9)


DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "sim-default": {
        "provider": "anthropic",
        "upstream_model": "sim-default",
        "input_usd_per_mtok": 3.0,
        "output_usd_per_mtok": 15.0,
        "fallbacks": ["sim-fallback"],
    },
    "sim-fallback": {
        "provider": "anthropic",
        "upstream_model": "sim-fallback",
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 5.0,
    },
    "sim-openai": {
        "provider": "openai",
        "upstream_model": "sim-openai",
        "input_usd_per_mtok": 2.5,
        "output_usd_per_mtok": 10.0,
    },
}


class ModelCatalog:
    def __init__(self, specs: list[ModelSpec]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        for spec in specs:
            missing = [f for f in spec.fallbacks if f not in self._specs]
            if missing:
                raise ValueError(f"model {spec.name!r} falls back to unknown {missing}")

    @classmethod
    def from_mapping(cls, raw: Any) -> ModelCatalog:
        if isinstance(raw, dict) and "models" in raw:
            raw = raw["models"]
        if isinstance(raw, dict):
            items = [{"name": name, **(fields or {})} for name, fields in raw.items()]
        elif isinstance(raw, list):
            items = raw
        else:
            raise ValueError("a models file holds a mapping of name -> spec, or a list of specs")
        return cls([ModelSpec.model_validate(item) for item in items])

    @classmethod
    def default(cls) -> ModelCatalog:
        return cls.from_mapping(DEFAULT_MODELS)

    @classmethod
    def load(cls, path: str | Path | None) -> ModelCatalog:
        """The catalog in `path` (.json, .yaml or .yml), or the default when None."""
        if not path:
            return cls.default()
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml  # only needed for YAML files

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
        return cls.from_mapping(raw)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModel(name) from None

    def chain(self, name: str) -> list[ModelSpec]:
        """The model and its fallbacks, in order, each once."""
        primary = self.get(name)
        seen = {primary.name}
        out = [primary]
        for fallback in primary.fallbacks:
            if fallback not in seen:
                seen.add(fallback)
                out.append(self.get(fallback))
        return out
