"""The Typer app and what every command shares: `--profile`, the client, `--json`."""

from __future__ import annotations

from typing import Annotated

import typer

from relay_cli.profiles import resolve
from relay_client import RelayClient

app = typer.Typer(
    name="relay",
    help="Chat with, run, watch and operate Relay. Set RELAY_URL and RELAY_API_KEY, "
    "or add a profile to ~/.config/relay/config.toml.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are one clear line (relay_cli.main)
    add_completion=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON only (for scripts)")]


class Options:
    profile: str | None = None


@app.callback()
def _global(
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="a profile of the config file")
    ] = None,
) -> None:
    Options.profile = profile


def client() -> RelayClient:
    target = resolve(Options.profile)
    return RelayClient(target.url, target.api_key)
