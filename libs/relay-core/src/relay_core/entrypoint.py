"""How every Relay service process starts: one code path for gateway, events,
state and runner (modelsim stands alone, like a real provider).

    def main() -> None:
        entrypoint.run("gateway", GatewaySettings, _serve)

`run` does, in order: JSON logs (relay_core.logs) at INFO; the settings,
validated; the log level they name; the Redis partition count they name
(`relay_core.partitions`, which every key of a run depends on); `tune_gc()`;
tracing (relay_core.tracing: on when an OTLP endpoint is set); one "<service> starting" line; then
`serve(settings)`, which blocks until the process should exit (uvicorn
through relay_core.httpserver, or the runner's own asyncio main).
Process-wide set-up that every service needs belongs here, between the
settings and `serve`.

Decisions:

- A bad setting is a configuration error, not a crash: ONE JSON log line
  naming each bad `RELAY_*` variable and what is wrong with it, and exit code
  2 (what Kubernetes shows as the container's last state). Never pydantic's
  own text (`str(ValidationError)` quotes the input, which may be a secret)
  and never a traceback.
- `ConfigError` is the same thing found later, by `serve` (a model catalog
  that does not parse, a tool plugin that does not import): raised before
  anything is served, reported the same way.
- Commands that are not servers (`relay-state migrate`) use `load_settings`
  alone, logging to stderr because their stdout is their output.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TextIO, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from relay_core import logs, partitions, tracing
from relay_core.config import RelaySettings
from relay_core.gctune import tune_gc

__all__ = ["EXIT_CONFIG", "ConfigError", "describe", "load_settings", "run"]

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
S = TypeVar("S", bound=BaseSettings)


class ConfigError(Exception):
    """A setting the service cannot start with, found after validation (a file
    it names, a plugin it loads). `run` logs it like a validation error, exit 2."""

    def __init__(self, setting: str | Iterable[str], problem: str) -> None:
        self.settings = [setting] if isinstance(setting, str) else list(setting)
        self.problem = problem
        super().__init__(f"{' or '.join(self.settings)}: {problem}")


def _env_name(settings_type: type[BaseSettings], error: dict[str, Any]) -> str | None:
    ctx = error.get("ctx") or {}
    if isinstance(ctx.get("setting"), str):
        return str(ctx["setting"])  # a model-level check naming its variable
    loc = error.get("loc") or ()
    if not loc:
        return None
    if str(loc[0]).isupper():  # read by its own name, not a RELAY_ one (OTEL_*)
        return str(loc[0])
    prefix = str(settings_type.model_config.get("env_prefix") or "")
    return f"{prefix}{loc[0]}".upper()


def describe(settings_type: type[BaseSettings], exc: ValidationError) -> tuple[list[str], str]:
    """The variables at fault and one line saying what is wrong with each.

    Built from each error's location and message only: pydantic's messages say
    what was expected, never the value given (`include_input=False`)."""
    names: list[str] = []
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        msg = str(error["msg"]).removeprefix("Value error, ")
        name = _env_name(settings_type, dict(error))
        if name:
            names.append(name)
        parts.append(msg if not name or msg.startswith(name) else f"{name}: {msg}")
    return names, "; ".join(parts)


def _refuse(service: str, names: list[str], problem: str) -> NoReturn:
    log.error(
        "%s cannot start: invalid settings: %s",
        service,
        problem,
        extra={"settings": names, "exit_code": EXIT_CONFIG},
    )
    sys.exit(EXIT_CONFIG)


def load_settings(
    service: str, settings_type: Callable[[], S], *, stream: TextIO | None = None
) -> S:
    """JSON logs, then the settings; a bad one logs one line and exits 2."""
    logs.configure(service, stream=stream)
    kind: Any = settings_type
    try:
        settings = settings_type()
    except ValidationError as exc:
        names, problem = describe(kind, exc)
        _refuse(service, names, problem)
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        _refuse(service, [], str(exc))
    logs.configure(service, getattr(settings, "log_level", "INFO"), stream=stream)
    partitions.configure(getattr(settings, "redis_partitions", partitions.DEFAULT_PARTITIONS))
    return settings


def run(service: str, settings_type: Callable[[], S], serve: Callable[[S], object]) -> NoReturn:
    """Start `service`: settings, logs, GC, then `serve(settings)` until it returns."""
    settings = load_settings(service, settings_type)
    tune_gc()  # a full collection stalls every request and run in flight; see gctune
    if isinstance(settings, RelaySettings):
        tracing.setup(service, settings.tracing_config())
    names = ("host", "port", "management_port")
    where = {k: getattr(settings, k) for k in names if getattr(settings, k, None)}
    log.info("%s starting", service, extra={**where, "pid": os.getpid()})
    try:
        serve(settings)
    except ConfigError as exc:
        _refuse(service, exc.settings, str(exc))
    sys.exit(0)
