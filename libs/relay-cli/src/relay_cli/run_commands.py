"""`relay chat`, `relay run`, `relay runs ...`, `relay conversations ...`."""

from __future__ import annotations

from typing import Annotated

import typer

from relay_cli import output
from relay_cli.app import JsonOption, app, client
from relay_cli.streaming import follow
from relay_client import RunStream
from relay_client.models import Run

runs_app = typer.Typer(help="List, show, cancel and follow your runs.", no_args_is_help=True)
conversations_app = typer.Typer(help="Read conversations.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(conversations_app, name="conversations")

Conversation = Annotated[
    str | None, typer.Option("--conversation", "-c", help="continue this conversation")
]
Model = Annotated[str | None, typer.Option("--model", "-m", help="model name")]
MaxCost = Annotated[float | None, typer.Option("--max-cost", help="cost ceiling in USD")]


def _finish(stream: RunStream, *, as_json: bool, on_stop: str) -> None:
    """Follow to the end; exit 1 unless it succeeded. Ctrl-C: `on_stop` is said."""
    try:
        done = follow(stream, as_json=as_json)
    except KeyboardInterrupt:
        stream.close()
        output.note(on_stop.format(run=stream.run_id), "yellow")
        raise typer.Exit(130) from None
    if as_json:
        summary: dict[str, object] = {"run_id": stream.run_id, "status": stream.status}
        summary["text"] = stream.text
        summary.update(cost_usd=stream.cost_usd, reconnects=stream.reconnects)
        output.emit_json(summary)
    if done is None or done.status != "succeeded":
        raise typer.Exit(1)


@app.command()
def chat(
    message: Annotated[str, typer.Argument(help="what to say")],
    conversation: Conversation = None,
    model: Model = None,
    max_cost: MaxCost = None,
    as_json: JsonOption = False,
) -> None:
    """An interactive run, streamed live. Ctrl-C cancels it."""
    with client() as relay:
        stream = relay.chat(
            message, conversation_id=conversation, model=model, max_cost_usd=max_cost
        )
        _finish(stream, as_json=as_json, on_stop="cancelled run {run}")


@app.command()
def run(
    message: Annotated[str, typer.Argument(help="what the agent should do")],
    conversation: Conversation = None,
    model: Model = None,
    max_cost: MaxCost = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="submit, don't follow")] = False,
    as_json: JsonOption = False,
) -> None:
    """A background run, followed live (Ctrl-C stops following; the run goes on)."""
    with client() as relay:
        accepted = relay.submit(
            message, conversation_id=conversation, model=model, max_cost_usd=max_cost
        )
        if detach:
            output.emit_json(accepted) if as_json else output.out.print(accepted.run_id)
            return
        if not as_json:
            output.note(f"run {accepted.run_id} queued")
        _finish(
            relay.stream(accepted),
            as_json=as_json,
            on_stop="stopped following; run {run} goes on (relay runs events {run})",
        )


def _row(run: Run) -> str:
    when = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{run.run_id}  {run.status:<9}  {when}  ${run.cost_usd:.4f}  {run.conversation_id}"


@runs_app.command("list")
def runs_list(
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="queued, running, succeeded...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page")] = None,
    as_json: JsonOption = False,
) -> None:
    """Your runs, newest first."""
    with client() as relay:
        page = relay.list_runs(status=status, limit=limit, cursor=cursor)
    if as_json:
        output.emit_json(page)
        return
    for item in page.runs:
        output.out.print(_row(item), markup=False)
    if page.next_cursor:
        output.note(f"more: relay runs list --cursor {page.next_cursor}")


@runs_app.command("show")
def runs_show(run_id: str, as_json: JsonOption = False) -> None:
    """One run: status, times, attempts, cost, error, links."""
    with client() as relay:
        item = relay.get_run(run_id)
    if as_json:
        output.emit_json(item)
        return
    for name, value in item.model_dump(mode="json").items():
        output.out.print(f"{name:<15} {value}", markup=False)


@runs_app.command("cancel")
def runs_cancel(run_id: str, as_json: JsonOption = False) -> None:
    """Stop a run (at its next step)."""
    with client() as relay:
        item = relay.cancel(run_id)
    output.emit_json(item) if as_json else output.out.print(f"{item.run_id} {item.status}")


@runs_app.command("events")
def runs_events(
    run_id: str,
    after: Annotated[str | None, typer.Option(help="resume after this event id")] = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a run's events (a finished run replays), resuming after any drop."""
    with client() as relay:
        _finish(
            relay.stream(run_id, last_event_id=after),
            as_json=as_json,
            on_stop="stopped following run {run}",
        )


@conversations_app.command("show")
def conversations_show(conversation_id: str, as_json: JsonOption = False) -> None:
    """A conversation's transcript, oldest first."""
    with client() as relay:
        transcript = relay.transcript(conversation_id)
    if as_json:
        output.emit_json(transcript)
        return
    for message in transcript.messages:
        style = "bold" if message.role == "user" else ""
        output.out.print(f"{message.role}: {message.text}", style=style, markup=False)
