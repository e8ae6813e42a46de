"""`relay admin ...` (an admin key): the kill switch and API keys."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from relay_cli import output
from relay_cli.app import JsonOption, app, client

admin_app = typer.Typer(help="Operate Relay (needs an admin key).", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
admin_app.add_typer(keys_app, name="keys")


class Switch(StrEnum):
    on = "on"
    off = "off"
    status = "status"


@admin_app.command("kill-switch")
def kill_switch(
    action: Annotated[Switch, typer.Argument(help="on, off or status")],
    as_json: JsonOption = False,
) -> None:
    """On: new runs are refused and runs in flight stop at their next step."""
    with client() as relay:
        if action is Switch.status:
            state = relay.kill_switch()
        else:
            state = relay.set_kill_switch(action is Switch.on)
    if as_json:
        output.emit_json(state)
    else:
        output.out.print(f"kill switch {'ON: new runs are refused' if state.enabled else 'off'}")


class Role(StrEnum):
    user = "user"
    admin = "admin"


@keys_app.command("create")
def keys_create(
    user_id: Annotated[str, typer.Argument(help="whose key")],
    role: Annotated[Role, typer.Option(help="user or admin")] = Role.user,
    name: Annotated[str, typer.Option(help="a label, to recognise it")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create a key; it is shown once (only its hash is stored)."""
    with client() as relay:
        created = relay.create_key(user_id, role=role.value, name=name)
    if as_json:
        output.emit_json(created)
        return
    output.note(f"key {created.key_id} for {created.user_id} ({created.role}); shown once:")
    output.out.print(created.api_key, markup=False)


@keys_app.command("list")
def keys_list(
    user_id: Annotated[str | None, typer.Option("--user", help="only this user's")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every key (prefix, owner, role, whether revoked); never the keys themselves."""
    with client() as relay:
        listed = relay.list_keys(user_id)
    if as_json:
        output.emit_json(listed)
        return
    for key in listed.keys:
        revoked = " revoked" if key.revoked_at else ""
        line = f"{key.key_id}  {key.prefix}…  {key.user_id}  {key.role}  {key.name}{revoked}"
        output.out.print(line, markup=False)


@keys_app.command("revoke")
def keys_revoke(key_id: str, as_json: JsonOption = False) -> None:
    """Revoke a key (refused everywhere within seconds)."""
    with client() as relay:
        relay.revoke_key(key_id)
    output.emit_json({"key_id": key_id, "revoked": True}) if as_json else output.out.print(
        f"{key_id} revoked"
    )
