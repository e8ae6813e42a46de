"""`relay top`: runs in flight per pool, queue lag, breakers and spend today,
refreshed every second (an admin key; `GET /v1/admin/overview`)."""

from __future__ import annotations

import time
from typing import Annotated

import httpx
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from relay_cli import output
from relay_cli.app import JsonOption, app, client
from relay_client import RelayClient, RelayError
from relay_client.models import Overview
from relay_client.retry import retryable

BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def render(view: Overview, *, note: str = "") -> Group:
    pools = Table(title="runner pools", title_justify="left", expand=False)
    for column in ("pool", "in flight", "capacity", "queue lag"):
        pools.add_column(column, justify="left" if column == "pool" else "right")
    for pool in view.pools:
        lag_style = "yellow" if pool.queue_lag else ""
        pools.add_row(
            pool.pool,
            str(pool.in_flight),
            str(pool.capacity),
            Text(str(pool.queue_lag), style=lag_style),
        )
    breakers = Table(title="circuit breakers", title_justify="left")
    for column in ("model", "provider", "state"):
        breakers.add_column(column)
    for b in view.breakers:
        breakers.add_row(
            b.model, f"{b.provider}/{b.upstream_model}", Text(b.state, BREAKER_STYLE[b.state])
        )
    spend = view.spend_today
    money = (
        f"spend today ({spend.day} UTC): ${spend.cost_usd:.4f} · {spend.runs} runs finished, "
        f"{spend.runs_in_flight} in flight"
        if spend
        else "spend today: unknown (state unavailable)"
    )
    switch = (
        Text("KILL SWITCH ON: new runs refused", "bold red")
        if view.kill_switch
        else Text("kill switch off", "green")
    )
    return Group(switch, pools, breakers, Text(money), Text(note, "dim"))


def _watch(relay: RelayClient, interval_s: float) -> None:
    """Refresh until Ctrl-C. A refusal (401, 403) ends it; an outage is shown and
    retried at the next tick, since that is when an operator watches most."""
    view = relay.overview()  # a refusal raises here, before the screen is taken
    with Live(console=output.out, auto_refresh=False) as live:
        while True:
            stamp = time.strftime("%H:%M:%S")
            live.update(render(view, note=f"{stamp} · every {interval_s:g} s · Ctrl-C quits"))
            live.refresh()
            time.sleep(interval_s)
            try:
                view = relay.overview()
            except RelayError as exc:
                if not retryable(exc):
                    raise
                live.update(Text(f"{stamp}  {exc}", "red"), refresh=True)
            except httpx.TransportError as exc:
                live.update(Text(f"{stamp}  cannot reach Relay: {exc}", "red"), refresh=True)


@app.command()
def top(
    interval: Annotated[float, typer.Option(min=0.2, help="seconds between refreshes")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="print one view and exit")] = False,
    as_json: JsonOption = False,
) -> None:
    """A live view: runs in flight per pool, queue lag, breakers, spend today."""
    with client() as relay:
        if once or as_json:
            view = relay.overview()
            output.emit_json(view) if as_json else output.out.print(render(view))
            return
        try:
            _watch(relay, interval)
        except KeyboardInterrupt:
            return
