"""Where `relay` finds the API and the key: flags, environment, config profiles.

Precedence, first wins: `--profile NAME` (that profile, whole); then
`RELAY_URL` / `RELAY_API_KEY`; then the config file's default profile
(`default_profile`, else the one named `default`). The file is
`$RELAY_CONFIG`, else `$XDG_CONFIG_HOME/relay/config.toml`
(`~/.config/relay/config.toml`):

    default_profile = "dev"

    [profiles.dev]
    url = "http://127.0.0.1:8080"
    api_key_file = "/path/to/relay/.relay/dev-api-key"   # or api_key = "..."

Why no `--api-key` flag: a key on the command line lands in the shell's
history and in every `ps` listing; the environment or a file (mode 0600)
does not.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay_client.config import DEFAULT_URL

__all__ = ["ConfigError", "Target", "config_path", "resolve"]


class ConfigError(Exception):
    """The config file or the chosen profile is unusable; the message says why."""


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str
    source: str  # where they came from, for error messages (never the key)


def config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("RELAY_CONFIG"):
        return Path(env["RELAY_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "relay" / "config.toml"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _profile(config: dict[str, Any], name: str, path: Path) -> Target:
    profiles = config.get("profiles", {})
    profile = profiles.get(name) if isinstance(profiles, dict) else None
    if not isinstance(profile, dict):
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
        raise ConfigError(
            f"no profile {name!r} in {path}" + (f" (known: {known})" if known else "")
        )
    key = str(profile.get("api_key") or "")
    key_file = profile.get("api_key_file")
    if not key and key_file:
        try:
            key = Path(str(key_file)).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"profile {name!r}: cannot read api_key_file: {exc}") from exc
    url = str(profile.get("url") or DEFAULT_URL)
    return Target(url.rstrip("/"), key, f"profile {name!r} of {path}")


def resolve(profile: str | None, environ: dict[str, str] | None = None) -> Target:
    env = dict(os.environ if environ is None else environ)
    path = config_path(env)
    if profile:
        return _profile(_load(path), profile, path)
    if env.get("RELAY_API_KEY"):
        url = env.get("RELAY_URL") or DEFAULT_URL
        return Target(url.rstrip("/"), env["RELAY_API_KEY"], "RELAY_URL/RELAY_API_KEY")
    config = _load(path)
    default = str(config.get("default_profile") or "default")
    if default in config.get("profiles", {}):
        target = _profile(config, default, path)
        if env.get("RELAY_URL"):
            return Target(env["RELAY_URL"].rstrip("/"), target.api_key, target.source)
        return target
    raise ConfigError(f"no API key: set RELAY_API_KEY (and RELAY_URL), or add a profile to {path}")
